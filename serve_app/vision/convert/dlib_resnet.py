"""Convert dlib's face recognition ResNet (`dlib_face_recognition_resnet_model_v1.dat`) to ONNX.

The network is dlib's `anet_type` from `dnn_face_recognition_ex.cpp`: a 7x7 stem, 14
residual units (29 convolutions) and a 256->128 fully connected layer without bias. The file
stores the layers from the input upwards but not the skip connections (tags), so we parse
the layers in order and rebuild the connections from the repeating unit pattern, refusing
anything that does not match it exactly.

Numerics that must match dlib: inputs are `(pixel - mean) / 256` with per-channel means from
the file; stride-2 convolutions and pools have no padding; when a residual's two operands
differ in size dlib zero-pads the smaller one (bottom/right, extra channels) instead of
cropping. Batch norms were already frozen into `affine` layers, which we fold into the
preceding convolution.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from serve_app.vision.convert.dlib_format import DlibFormatError, DlibReader

INPUT_LAYER = "input_rgb_image_sized"
OPSET = 17
CHIP_SIZE = 150
EMBEDDING_DIM = 128


@dataclass
class Layer:
    kind: str
    params: dict = field(default_factory=dict)


@dataclass
class DlibNet:
    """The parsed network: input normalisation and the layers from the input upwards."""

    channel_means: tuple[float, float, float]
    input_size: tuple[int, int]
    layers: list[Layer]


def _read_layer(reader: DlibReader) -> Layer:
    name = reader.read_str()
    if name == "con_4":
        conv = reader.read_conv()
        return Layer(
            "conv",
            {
                "weights": conv.weights,
                "bias": conv.bias,
                "stride": conv.stride,
                "padding": conv.padding,
            },
        )
    if name == "affine_":
        params = reader.read_tensor().reshape(-1)
        gamma_shape = reader.read_alias_tensor()
        reader.read_alias_tensor()  # beta: same shape, stored after gamma
        mode = reader.read_int()
        if mode != 0:
            raise DlibFormatError("only per-channel (CONV_MODE) affine layers are supported")
        n = int(np.prod(gamma_shape))
        return Layer("affine", {"gamma": params[:n], "beta": params[n : 2 * n]})
    if name == "relu_":
        return Layer("relu")
    if name == "add_prev_":
        return Layer("add_prev")
    if name in ("max_pool_2", "avg_pool_2"):
        nr, nc, sy, sx, py, px = (reader.read_int() for _ in range(6))
        kind = "max_pool" if name == "max_pool_2" else "avg_pool"
        return Layer(kind, {"window": (nr, nc), "stride": (sy, sx), "padding": (py, px)})
    if name == "fc_2":
        num_outputs, num_inputs = reader.read_int(), reader.read_int()
        params = reader.read_tensor().reshape(-1)
        w_shape = reader.read_alias_tensor()
        reader.read_alias_tensor()
        bias_mode = reader.read_int()
        for _ in range(4):
            reader.read_float()
        if bias_mode != 1:
            raise DlibFormatError("expected an fc layer without bias (fc_no_bias)")
        weights = params[: num_inputs * num_outputs].reshape(num_inputs, num_outputs)
        if w_shape[:2] != (num_inputs, num_outputs):
            raise DlibFormatError(f"fc weight shape {w_shape} disagrees with its header")
        return Layer("fc", {"weights": weights})
    raise DlibFormatError(f"unsupported dlib layer {name!r}")


def parse_dlib_resnet(data: bytes) -> DlibNet:
    """Parse the bytes of `dlib_face_recognition_resnet_model_v1.dat`."""
    reader = DlibReader(data)
    if reader.read_int() != 1:
        raise DlibFormatError("not a dlib loss-layer network (bad version)")
    reader.expect_str("loss_metric_2")
    reader.read_float()  # margin
    reader.read_float()  # distance threshold (0.6), a training parameter
    # The nested add_layer/tag/skip wrappers write their versions first, outermost first.
    marker = bytes([1, len(INPUT_LAYER)]) + INPUT_LAYER.encode()
    while reader.peek(len(marker)) != marker:
        if reader.read_int() not in (1, 2, 3):
            raise DlibFormatError("unexpected layer-wrapper version before the input layer")
    reader.expect_str(INPUT_LAYER)
    means = (reader.read_float(), reader.read_float(), reader.read_float())
    size = (reader.read_int(), reader.read_int())
    layers: list[Layer] = []
    while reader.pos < len(data):
        layers.append(_read_layer(reader))
        for _ in range(3):  # setup-called / gradient-stale / disabled flags
            reader.read_bool()
        for _ in range(3):  # x_grad, cached_output, params_grad: empty after net.clean()
            reader.read_tensor()
        if len(layers) == 1:
            reader.read_int()  # sample expansion factor of the layer above the input
    return DlibNet(channel_means=means, input_size=size, layers=layers)


class _Graph:
    """Accumulates ONNX nodes and initializers with unique names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def name(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}_{self._n}"

    def const(self, value: np.ndarray, prefix: str = "c") -> str:
        name = self.name(prefix)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], prefix: str | None = None, **attrs) -> str:
        out = self.name(prefix or op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], **attrs))
        return out


def _out_size(size: int, window: int, stride: int, pad: int) -> int:
    return 1 + (size + 2 * pad - window) // stride


def _pad_to(g: _Graph, x: str, shape: tuple[int, int, int], target: tuple[int, int, int]) -> str:
    """Zero-pad an NCHW activation at the end of C, H and W (dlib's add_prev semantics)."""
    if shape == target:
        return x
    dc, dh, dw = (t - s for s, t in zip(shape, target, strict=True))
    pads = np.array([0, 0, 0, 0, 0, dc, dh, dw], dtype=np.int64)
    return g.op("Pad", [x, g.const(pads, "pads")], mode="constant")


def build_onnx(net: DlibNet) -> onnx.ModelProto:
    """Rebuild dlib's anet_type as an ONNX graph: uint8 NHWC RGB chips -> 128-D descriptors."""
    g = _Graph()
    layers = list(net.layers)
    h, w = net.input_size
    if (h, w) != (CHIP_SIZE, CHIP_SIZE):
        raise DlibFormatError(f"expected a {CHIP_SIZE}x{CHIP_SIZE} input layer, got {h}x{w}")

    x = g.op("Cast", ["chips"], to=TensorProto.FLOAT)
    means = np.array(net.channel_means, dtype=np.float32).reshape(1, 1, 1, 3)
    x = g.op("Sub", [x, g.const(means, "mean")])
    x = g.op("Mul", [x, g.const(np.array(1.0 / 256.0, dtype=np.float32), "scale")])
    x = g.op("Transpose", [x], perm=[0, 3, 1, 2])
    shape = (3, h, w)

    def take(kind: str) -> Layer:
        if not layers or layers[0].kind != kind:
            found = layers[0].kind if layers else "end of network"
            raise DlibFormatError(f"unexpected layer order: wanted {kind}, found {found}")
        return layers.pop(0)

    def conv_affine(x: str, shape: tuple[int, int, int]) -> tuple[str, tuple[int, int, int]]:
        conv, affine = take("conv"), take("affine")
        gamma, beta = affine.params["gamma"], affine.params["beta"]
        weights = conv.params["weights"] * gamma.reshape(-1, 1, 1, 1)
        bias = conv.params["bias"] * gamma + beta
        (sy, sx), (py, px) = conv.params["stride"], conv.params["padding"]
        kh, kw = weights.shape[2:]
        if weights.shape[1] != shape[0]:
            raise DlibFormatError("convolution input channels do not match the network")
        y = g.op(
            "Conv",
            [x, g.const(weights.astype(np.float32), "w"), g.const(bias.astype(np.float32), "b")],
            kernel_shape=[kh, kw],
            strides=[sy, sx],
            pads=[py, px, py, px],
        )
        out = (weights.shape[0], _out_size(shape[1], kh, sy, py), _out_size(shape[2], kw, sx, px))
        return y, out

    def pool(x: str, shape: tuple[int, int, int], layer: Layer) -> tuple[str, tuple[int, int, int]]:
        (kh, kw), (sy, sx), (py, px) = (layer.params[k] for k in ("window", "stride", "padding"))
        op = "MaxPool" if layer.kind == "max_pool" else "AveragePool"
        y = g.op(op, [x], kernel_shape=[kh, kw], strides=[sy, sx], pads=[py, px, py, px])
        return y, (shape[0], _out_size(shape[1], kh, sy, py), _out_size(shape[2], kw, sx, px))

    # Stem: conv 7x7/2 -> affine -> relu -> max_pool 3x3/2.
    x, shape = conv_affine(x, shape)
    take("relu")
    x = g.op("Relu", [x])
    x, shape = pool(x, shape, take("max_pool"))

    # Residual units: conv-affine-relu-conv-affine, [avg_pool of the unit input], add, relu.
    units = 0
    while layers and layers[0].kind == "conv":
        unit_in, in_shape = x, shape
        y, y_shape = conv_affine(x, shape)
        take("relu")
        y = g.op("Relu", [y])
        y, y_shape = conv_affine(y, y_shape)
        skip, skip_shape = unit_in, in_shape
        if layers and layers[0].kind == "avg_pool":
            skip, skip_shape = pool(unit_in, in_shape, take("avg_pool"))
        take("add_prev")
        target = tuple(max(a, b) for a, b in zip(y_shape, skip_shape, strict=True))
        x = g.op("Add", [_pad_to(g, y, y_shape, target), _pad_to(g, skip, skip_shape, target)])
        take("relu")
        x = g.op("Relu", [x])
        shape = target  # type: ignore[assignment]
        units += 1

    gap = take("avg_pool")
    if gap.params["window"] != (0, 0):
        raise DlibFormatError("expected avg_pool_everything before the fc layer")
    x = g.op("GlobalAveragePool", [x])
    x = g.op("Flatten", [x], axis=1)
    fc = take("fc")
    if layers:
        raise DlibFormatError(f"{len(layers)} unexpected layers after the fc layer")
    if units != 14 or fc.params["weights"].shape != (shape[0], EMBEDDING_DIM):
        raise DlibFormatError("this is not dlib's 29-layer face recognition ResNet")
    g.nodes.append(
        helper.make_node("MatMul", [x, g.const(fc.params["weights"], "fc")], ["descriptor"])
    )

    graph = helper.make_graph(
        g.nodes,
        "dlib_face_recognition_resnet_v1",
        [helper.make_tensor_value_info("chips", TensorProto.UINT8, ["batch", h, w, 3])],
        [helper.make_tensor_value_info("descriptor", TensorProto.FLOAT, ["batch", EMBEDDING_DIM])],
        initializer=g.inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="faceserve",
        doc_string="dlib_face_recognition_resnet_model_v1 (public domain), converted by faceserve",
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def convert_dlib_resnet(source: Path, destination: Path) -> Path:
    """Convert the .dat file at `source` into an ONNX file at `destination` (atomically)."""
    model = build_onnx(parse_dlib_resnet(Path(source).read_bytes()))
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = destination.with_suffix(destination.suffix + ".tmp")
    tmp.write_bytes(model.SerializeToString())
    tmp.replace(destination)
    return destination
