"""Convert dlib's CNN face detector (`mmod_human_face_detector.dat`) to ONNX.

The file holds dlib's `loss_mmod` network from `dnn_mmod_face_detection_ex.cpp`:

    loss_mmod<con<1,9,9,1,1, rcon5<rcon5<rcon5<downsampler<
        input_rgb_image_pyramid<pyramid_down<6>>>>>>>>

where `downsampler` is three 5x5 stride-2 convolutions (16, 32, 32 filters) and `rcon5` a
5x5 stride-1 convolution with 45 filters, each followed by batch norm and relu. The batch
norms are stored with their running statistics (`bn_con2`); at inference dlib turns each into
an `affine_` layer (gamma / sqrt(var + eps), beta - mean * that), which we fold into the
preceding convolution exactly as dlib computes it.

The ONNX graph is fully convolutional (any height and width): dlib's normalised tiled pyramid
tensor -> (N, windows, H', W') detection scores. Everything outside the network -- the pyramid
tiling, thresholding, mapping feature positions back to the image and non-maximum
suppression -- lives in `serve_app.vision.mmod`, with the numbers it needs (detector
windows, NMS thresholds, pyramid paddings, the feature-to-input mapping) read here from the
file and written into the model's metadata, so the runtime has a single source.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from serve_app.vision.convert.dlib_format import DlibFormatError, DlibReader

INPUT_LAYER = "input_rgb_image_pyramid"
OPSET = 17
# Key of the JSON document with the detector's post-processing numbers in the ONNX metadata.
METADATA_KEY = "faceserve.mmod"
# dlib's defaults for a file written before input_rgb_image_pyramid2 stored its paddings.
PYRAMID_PADDING = 10
PYRAMID_OUTER_PADDING = 11
# pyramid_down<6>: each level is 5/6 of the one above.
PYRAMID_N = 6


@dataclass
class ConvLayer:
    weights: np.ndarray  # (out, in, kh, kw)
    bias: np.ndarray
    stride: tuple[int, int]  # (y, x)
    padding: tuple[int, int]  # (y, x)
    # Batch norm (as dlib's inference affine_) is folded into weights and bias at parse time.
    relu: bool = False


@dataclass
class MmodNet:
    """The parsed detector: input normalisation, detection options and the conv stack."""

    channel_means: tuple[float, float, float]
    detector_windows: list[tuple[int, int]]  # (width, height) per output channel
    nms_iou: float
    nms_covered: float
    layers: list[ConvLayer] = field(default_factory=list)


def _read_options(reader: DlibReader) -> tuple[list[tuple[int, int]], float, float]:
    """mmod_options: detector windows and the NMS overlap test (the rest is training-only)."""
    version = reader.read_int()
    if version != 1:
        # Versions 2-4 store a list of labelled windows (multi-class detectors); the face
        # model is version 1 and nothing else is tested, so refuse rather than guess.
        raise DlibFormatError(f"unsupported mmod_options version {version}")
    windows = [(reader.read_int(), reader.read_int())]
    for _ in range(3):  # loss per false alarm / missed target, truth match IoU: training
        reader.read_float()
    nms_iou, nms_covered = reader.read_float(), reader.read_float()
    reader.read_float(), reader.read_float()  # overlaps_ignore: training only
    return windows, nms_iou, nms_covered


def _read_conv(reader: DlibReader) -> ConvLayer:
    conv = reader.read_conv()
    return ConvLayer(
        conv.weights.astype(np.float32), conv.bias.astype(np.float32), conv.stride, conv.padding
    )


def _read_bn_as_affine(reader: DlibReader) -> tuple[np.ndarray, np.ndarray]:
    """bn_con2 -> the (gamma, beta) of the affine_ layer dlib builds from it for inference."""
    params = reader.read_tensor().reshape(-1)
    gamma_shape = reader.read_alias_tensor()
    reader.read_alias_tensor()  # beta: same shape, after gamma in params
    reader.read_tensor()  # means of the last training batch
    reader.read_tensor()  # their inverse standard deviations
    running_means = reader.read_tensor().reshape(-1)
    running_variances = reader.read_tensor().reshape(-1)
    reader.read_int()  # num_updates
    reader.read_int()  # running_stats_window_size
    for _ in range(4):  # learning-rate and weight-decay multipliers
        reader.read_float()
    eps = reader.read_float()
    n = int(np.prod(gamma_shape))
    g, b = params[:n], params[n : 2 * n]
    # dlib: g = sg / sqrt(var + eps); b = sb - g * mean, in float32.
    gamma = (g / np.sqrt(running_variances + np.float32(eps))).astype(np.float32)
    beta = (b - gamma * running_means).astype(np.float32)
    return gamma, beta


def parse_dlib_mmod(data: bytes) -> MmodNet:
    """Parse the bytes of `mmod_human_face_detector.dat`."""
    reader = DlibReader(data)
    if reader.read_int() != 1:
        raise DlibFormatError("not a dlib loss-layer network (bad version)")
    reader.expect_str("loss_mmod_")
    windows, nms_iou, nms_covered = _read_options(reader)
    # The nested add_layer wrappers write their versions first, outermost first.
    marker = bytes([1, len(INPUT_LAYER)]) + INPUT_LAYER.encode()
    while reader.peek(len(marker)) != marker:
        if reader.read_int() not in (1, 2, 3):
            raise DlibFormatError("unexpected layer-wrapper version before the input layer")
    reader.expect_str(INPUT_LAYER)
    means = (reader.read_float(), reader.read_float(), reader.read_float())
    net = MmodNet(means, windows, nms_iou, nms_covered)
    first = True
    while reader.pos < len(data):
        start = reader.pos
        name = reader.read_str()
        if name == "con_4":
            net.layers.append(_read_conv(reader))
        elif name == "bn_con2":
            if not net.layers or net.layers[-1].relu:
                raise DlibFormatError(f"batch norm at byte {start} does not follow a conv")
            gamma, beta = _read_bn_as_affine(reader)
            conv = net.layers[-1]
            if gamma.shape != conv.bias.shape:
                raise DlibFormatError("batch norm size does not match its convolution")
            conv.weights = (conv.weights * gamma.reshape(-1, 1, 1, 1)).astype(np.float32)
            conv.bias = (conv.bias * gamma + beta).astype(np.float32)
        elif name == "relu_":
            if not net.layers or net.layers[-1].relu:
                raise DlibFormatError(f"relu at byte {start} does not follow a conv")
            net.layers[-1].relu = True
        else:
            raise DlibFormatError(f"unsupported dlib layer {name!r} at byte {start}")
        for _ in range(3):  # setup-called / gradient-stale / disabled flags
            reader.read_bool()
        for _ in range(3):  # x_grad, cached_output, params_grad: empty after net.clean()
            reader.read_tensor()
        if first:
            reader.read_int()  # sample expansion factor of the layer above the input
            first = False
    _check_shape(net)
    return net


def _check_shape(net: MmodNet) -> None:
    """Refuse anything that is not a plain conv stack ending in one score map per window."""
    if len(net.layers) < 2:
        raise DlibFormatError("expected a stack of convolutions")
    channels = 3
    for i, layer in enumerate(net.layers):
        if layer.weights.shape[1] != channels:
            raise DlibFormatError(f"convolution {i} input channels do not match the network")
        channels = layer.weights.shape[0]
        last = i == len(net.layers) - 1
        if layer.relu == last:
            raise DlibFormatError("expected relu after every convolution but the last")
    if channels != len(net.detector_windows):
        raise DlibFormatError("the score layer's outputs do not match the detector windows")


def feature_to_input(net: MmodNet) -> tuple[float, float, float, float]:
    """(scale_x, offset_x, scale_y, offset_y): output position -> input-tensor position.

    dlib's con_::map_output_to_input is p * stride - padding + kernel // 2, applied from the
    score layer down to the input; composed, it is affine.
    """
    sx, ox, sy, oy = 1.0, 0.0, 1.0, 0.0
    for layer in reversed(net.layers):
        kh, kw = layer.weights.shape[2:]
        (stride_y, stride_x), (pad_y, pad_x) = layer.stride, layer.padding
        # p_in = p_out * stride - pad + k // 2, with p_out = s * p + o so far.
        sx, ox = sx * stride_x, ox * stride_x - pad_x + kw // 2
        sy, oy = sy * stride_y, oy * stride_y - pad_y + kh // 2
    return sx, ox, sy, oy


def metadata(net: MmodNet) -> dict:
    """What the runtime needs besides the network, read from the file (see module doc)."""
    sx, ox, sy, oy = feature_to_input(net)
    return {
        "channel_means": list(net.channel_means),
        "pyramid_n": PYRAMID_N,
        "pyramid_padding": PYRAMID_PADDING,
        "pyramid_outer_padding": PYRAMID_OUTER_PADDING,
        "detector_windows": [list(w) for w in net.detector_windows],
        "nms_iou": net.nms_iou,
        "nms_covered": net.nms_covered,
        "feature_to_input": [sx, ox, sy, oy],
    }


def build_onnx(net: MmodNet) -> onnx.ModelProto:
    """The conv stack as ONNX: dlib's input tensor -> (N, windows, H', W') float scores.

    The input is what dlib's input layer builds: the tiled pyramid as (N, 3, H, W) float32,
    (pixel - channel mean) / 256, zero where no level lies. The pyramid is built in that space
    (see `serve_app.vision.packs.mmod_detector`), so the normalisation stays outside the graph.
    """
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []

    def const(value: np.ndarray, name: str) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    x = "tensor"
    for i, layer in enumerate(net.layers):
        kh, kw = layer.weights.shape[2:]
        (sy, sx), (py, px) = layer.stride, layer.padding
        out = "scores" if i == len(net.layers) - 1 else f"conv_{i}"
        nodes.append(
            helper.make_node(
                "Conv",
                [x, const(layer.weights, f"w_{i}"), const(layer.bias, f"b_{i}")],
                [out],
                kernel_shape=[kh, kw],
                strides=[sy, sx],
                pads=[py, px, py, px],
            )
        )
        x = out
        if layer.relu:
            nodes.append(helper.make_node("Relu", [x], [f"relu_{i}"]))
            x = f"relu_{i}"

    windows = len(net.detector_windows)
    graph = helper.make_graph(
        nodes,
        "dlib_mmod_human_face_detector",
        [helper.make_tensor_value_info("tensor", TensorProto.FLOAT, ["batch", 3, "h_in", "w_in"])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", windows, "h", "w"])],
        initializer=inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="faceserve",
        doc_string="dlib mmod_human_face_detector (public domain), converted by faceserve",
    )
    model.ir_version = 8
    helper.set_model_props(model, {METADATA_KEY: json.dumps(metadata(net))})
    onnx.checker.check_model(model)
    return model


def convert_dlib_mmod(source: Path, target: Path) -> Path:
    """Parse `source` (the .dat file) and write the ONNX model to `target`."""
    model = build_onnx(parse_dlib_mmod(Path(source).read_bytes()))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    onnx.save(model, str(tmp))
    tmp.replace(target)  # atomic: a crash never leaves a half-written model
    return target
