"""The dlib -> ONNX converter reproduces dlib's own descriptors."""

from __future__ import annotations

from pathlib import Path

import dlib
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from serve_app.vision.convert.dlib_format import DlibFormatError
from serve_app.vision.convert.dlib_resnet import build_onnx, parse_dlib_resnet
from serve_app.vision.image import decode_image
from serve_app.vision.packs.dlib_r29 import (
    ONNX_FILE,
    RESNET_FILE,
    SHAPE_FILE,
    DlibR29Pack,
    shipped_model_path,
)

from .conftest import insightface_image


@pytest.fixture(scope="module")
def session(model_dir: Path) -> ort.InferenceSession:
    return ort.InferenceSession(
        str(DlibR29Pack.pack_dir(model_dir) / ONNX_FILE), providers=["CPUExecutionProvider"]
    )


def _real_chips(paths: list[Path]) -> np.ndarray:
    """Aligned 150x150 chips cut by dlib itself from real photos."""
    detector = dlib.get_frontal_face_detector()
    shapes = dlib.shape_predictor(str(shipped_model_path(SHAPE_FILE)))
    chips = []
    for path in paths:
        image = decode_image(path.read_bytes()).pixels
        for rect in detector(image, 1):
            chips.append(dlib.get_face_chip(image, shapes(image, rect), size=150, padding=0.25))
    return np.stack(chips)


def test_onnx_matches_dlib_compute_face_descriptor(session, faces_dir: Path) -> None:
    paths = [insightface_image("t1.jpg")] + sorted(
        (faces_dir / "people" / "face_recognition").glob("*/*.jpg")
    )[:8]
    chips = _real_chips(paths)
    assert len(chips) >= 10
    resnet = dlib.face_recognition_model_v1(str(shipped_model_path(RESNET_FILE)))
    expected = np.stack([np.array(resnet.compute_face_descriptor(c)) for c in chips])
    got = session.run(None, {"chips": chips})[0]
    assert got.shape == (len(chips), 128)
    assert np.abs(got - expected).max() <= 1e-5


def test_signature_is_uint8_nhwc_with_dynamic_batch(session) -> None:
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert inp.type == "tensor(uint8)"
    assert inp.shape[1:] == [150, 150, 3] and isinstance(inp.shape[0], str)
    assert out.shape[1:] == [128]
    rng = np.random.default_rng(0)
    chips = rng.integers(0, 256, size=(5, 150, 150, 3), dtype=np.uint8)
    batched = session.run(None, {"chips": chips})[0]
    single = np.concatenate([session.run(None, {"chips": chips[i : i + 1]})[0] for i in range(5)])
    assert np.abs(batched - single).max() < 1e-5


def test_converted_model_is_valid_onnx(model_dir: Path) -> None:
    model = onnx.load(str(DlibR29Pack.pack_dir(model_dir) / ONNX_FILE))
    onnx.checker.check_model(model)
    assert sum(node.op_type == "Conv" for node in model.graph.node) == 29


def test_corrupt_model_files_are_rejected() -> None:
    data = shipped_model_path(RESNET_FILE).read_bytes()
    with pytest.raises(DlibFormatError, match="end of file"):
        parse_dlib_resnet(data[: len(data) // 2])
    with pytest.raises(DlibFormatError):
        parse_dlib_resnet(b"\x01\x01\x05hello" + data[20:])
    # A network with the right file format but a different architecture is refused too.
    net = parse_dlib_resnet(data)
    del net.layers[10:18]
    with pytest.raises(DlibFormatError):
        build_onnx(net)
