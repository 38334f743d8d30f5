"""InsightFace packs against small generated ONNX models with the real files' signatures.

The real weights cannot be downloaded here, so the detector and recognizer are built with
`onnx.helper`: insightface's model_zoo routes them exactly as it routes det_10g.onnx and
w600k_r50.onnx, and its own SCRFD/ArcFace code runs on them. The detector reports two fixed
faces (in its 640x640 input) whatever the image; everything around it is real.
"""

from __future__ import annotations

import functools
import http.server
import importlib.util
import threading
import zipfile
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from insightface.model_zoo import model_zoo
from insightface.utils import face_align
from onnx import TensorProto, helper, numpy_helper

from serve_app.config import Settings
from serve_app.errors import InvalidParameter, ModelNotAvailable
from serve_app.vision.packs.insightface_packs import (
    INSIGHTFACE_PACKS,
    AntelopeV2Pack,
    BuffaloLPack,
    BuffaloSPack,
    find_model_files,
    pull_pack,
)

# insightface's face_align calls a scikit-image API that now warns; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:`estimate` is deprecated:FutureWarning")

STRIDES = (8, 16, 32)
# ArcFace's template as fractions of a square box: a frontal face's 5 points.
TEMPLATE = face_align.arcface_dst / 112.0
# (stride, grid row, grid col, score, box x1 y1 x2 y2) in the detector's 640x640 input.
FAKE_FACES = (
    (32, 2, 14, 0.9, (435.0, 34.0, 500.0, 99.0)),
    (16, 7, 10, 0.8, (137.5, 88.0, 182.5, 133.0)),
    (8, 30, 60, 0.3, (460.0, 230.0, 500.0, 270.0)),  # below the 0.5 threshold
)


def _detector_model() -> onnx.ModelProto:
    """SCRFD's signature (det_10g/det_500m): 9 outputs, scores/boxes/keypoints x 3 strides."""
    outputs = {}
    for stride in STRIDES:
        n = (640 // stride) ** 2 * 2  # two anchors per cell
        outputs[stride] = [np.zeros((n, w), np.float32) for w in (1, 4, 10)]
    for stride, row, col, score, (x1, y1, x2, y2) in FAKE_FACES:
        i = (row * 640 // stride + col) * 2
        cx, cy = col * stride, row * stride
        scores, boxes, kps = outputs[stride]
        scores[i] = score
        boxes[i] = np.array([cx - x1, cy - y1, x2 - cx, y2 - cy]) / stride
        points = np.array([x1, y1]) + TEMPLATE * np.array([x2 - x1, y2 - y1])
        kps[i] = ((points - np.array([cx, cy])) / stride).ravel()
    # Outputs depend on the input (mean * 0) so the graph stays a function of the image.
    nodes = [
        helper.make_node("ReduceMean", ["input.1"], ["mean"], keepdims=0, name="ReduceMean_0"),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"], name="Mul_1"),
    ]
    weights = [numpy_helper.from_array(np.zeros((), np.float32), "zero")]
    names = []
    for kind, _ in enumerate(("score", "bbox", "kps")):
        for stride in STRIDES:
            name = f"out_{kind}_{stride}"
            weights.append(numpy_helper.from_array(outputs[stride][kind], f"{name}_const"))
            nodes.append(helper.make_node("Add", ["nothing", f"{name}_const"], [name]))
            names.append((name, outputs[stride][kind].shape[1]))
    graph = helper.make_graph(
        nodes,
        "scrfd_like",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, "?", "?"])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [None, w]) for n, w in names],
        weights,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def _feature_model(size: int, width: int, input_name: str) -> onnx.ModelProto:
    """Conv + Flatten + MatMul with fixed random weights: ArcFace's (size 112, 512) signature."""
    rng = np.random.default_rng(size)
    cells = (size // 8) ** 2 * 16
    weights = [
        numpy_helper.from_array(rng.normal(0, 0.1, (16, 3, 8, 8)).astype(np.float32), "conv_w"),
        numpy_helper.from_array(
            rng.normal(0, cells**-0.5, (cells, width)).astype(np.float32), "fc_w"
        ),
    ]
    nodes = [
        helper.make_node("Conv", [input_name, "conv_w"], ["c"], strides=[8, 8], name="Conv_0"),
        helper.make_node("Flatten", ["c"], ["f"], axis=1, name="Flatten_1"),
        helper.make_node("MatMul", ["f", "fc_w"], ["fc1"], name="MatMul_2"),
    ]
    graph = helper.make_graph(
        nodes,
        "features",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["None", 3, size, size])],
        [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, ["None", width])],
        weights,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory) -> dict[str, Path]:
    """Generated files named like buffalo_l's: detector, recognizer and a 2d106 landmarker."""
    folder = tmp_path_factory.mktemp("onnx")
    models = {
        "det_10g.onnx": _detector_model(),
        "w600k_r50.onnx": _feature_model(112, 512, "input.1"),
        "2d106det.onnx": _feature_model(192, 212, "data"),
    }
    for name, model in models.items():
        onnx.checker.check_model(model)
        onnx.save(model, folder / name)
    return {name: folder / name for name in models}


def _install(onnx_files: dict[str, Path], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, path in onnx_files.items():
        (folder / name).write_bytes(path.read_bytes())
    return folder


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, onnx_files) -> Path:
    """buffalo_l laid out flat; antelopev2 nested one level, as its official zip is."""
    root = tmp_path_factory.mktemp("models")
    _install(onnx_files, root / "buffalo_l")
    _install(onnx_files, root / "antelopev2" / "antelopev2")
    return root


def _settings(model_dir: Path, **overrides) -> Settings:
    return Settings(data_dir=model_dir / "data", model_dir=model_dir, embed_threads=1, **overrides)


@pytest.fixture(scope="module")
def pack(model_dir) -> BuffaloLPack:
    return BuffaloLPack(_settings(model_dir))


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    spec = importlib.util.find_spec("insightface")
    assert spec is not None and spec.origin is not None
    path = Path(spec.origin).parent / "data" / "images" / "t1.jpg"
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def test_model_zoo_routes_generated_files_like_the_real_ones(onnx_files, model_dir):
    tasks = {n: model_zoo.get_model(str(p)).taskname for n, p in onnx_files.items()}
    assert tasks == {
        "det_10g.onnx": "detection",
        "w600k_r50.onnx": "recognition",
        "2d106det.onnx": "landmark_2d_106",
    }
    found = find_model_files(model_dir / "buffalo_l")
    assert {task: path.name for task, path in found.items()} == {
        "detection": "det_10g.onnx",
        "recognition": "w600k_r50.onnx",
    }
    assert BuffaloLPack.is_prepared(model_dir)
    assert AntelopeV2Pack.is_prepared(model_dir)  # nested one level
    assert not BuffaloSPack.is_prepared(model_dir)


def test_registry_lists_all_four_packs(model_dir):
    from serve_app.vision.packs.registry import PACKS

    assert set(PACKS) == {"dlib-r29", "buffalo_l", "buffalo_s", "antelopev2"}
    for cls in INSIGHTFACE_PACKS:
        info = cls.info(model_dir)
        assert (info.embedding_dim, info.offline) == (512, False)
        assert "non-commercial" in info.license
    loaded = BuffaloLPack(_settings(model_dir))
    assert loaded.model_version == "buffalo_l:1"
    assert "literature default" in loaded.calibration.source
    assert loaded.similarity(np.eye(512)[0], np.eye(512)[0]) > 99


def test_detect_maps_faces_back_to_the_original_image(pack, photo):
    faces = pack.detect(photo)
    assert [round(f.confidence) for f in faces] == [90, 80]  # largest first, 0.3 dropped
    height, width = photo.shape[:2]
    scale = width / 640  # SCRFD letterboxes the 1280x886 photo into 640x640
    for face, (_, _, _, _, (x1, y1, x2, y2)) in zip(faces, FAKE_FACES, strict=False):
        box = face.box
        expected = np.array([x1, y1, x2 - x1, y2 - y1]) * scale
        assert [box.left, box.top, box.width, box.height] == pytest.approx(expected, abs=0.5)
        assert face.landmarks.shape == (5, 2)
        assert (face.landmarks >= 0).all()
        assert (face.landmarks[:, 0] < width).all() and (face.landmarks[:, 1] < height).all()
        assert face.chip.shape == (112, 112, 3) and face.chip.dtype == np.uint8
        # Aligned on the original pixels and returned as RGB.
        chip = face_align.norm_crop(photo, landmark=face.landmarks, image_size=112)
        assert np.abs(face.chip.astype(int) - chip).max() <= 1
        pose = face.quality.pose
        assert abs(pose.yaw) < 2 and abs(pose.roll) < 2 and abs(pose.pitch) < 2
        assert 0 < face.quality.sharpness <= 100 and 0 < face.quality.brightness <= 100
        assert face.quality.face_size == pytest.approx(min(box.width, box.height))


def test_detect_on_a_downscaled_copy_gives_the_same_faces(model_dir, pack, photo):
    small = BuffaloLPack(_settings(model_dir, detect_max_side=400))
    full = pack.detect(photo)
    reduced = small.detect(photo)
    assert len(reduced) == len(full) == 2
    for a, b in zip(full, reduced, strict=True):
        assert b.box.left == pytest.approx(a.box.left, rel=0.01)
        assert b.box.width == pytest.approx(a.box.width, rel=0.01)
        np.testing.assert_allclose(b.landmarks, a.landmarks, atol=2.5)
        # Chips come from the original pixels, not from the reduced copy.
        assert np.abs(b.chip.astype(int) - a.chip).mean() < 4


def test_embeddings_are_unit_512_float32_and_flip_averaged(pack, photo):
    faces = pack.detect(photo)
    vectors = pack.embed(faces)
    assert vectors.shape == (2, 512) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert float(vectors[0] @ vectors[1]) < 0.99  # different faces, different vectors
    # Mirror averaging makes a chip and its mirror image embed the same.
    mirrored = pack.embed_chips(np.stack([f.chip[:, ::-1] for f in faces]))
    np.testing.assert_allclose(mirrored, vectors, atol=1e-5)
    assert pack.embed([]).shape == (0, 512)


def test_recognizer_sees_rgb_chips_normalised_like_arcface(model_dir, onnx_files, pack, photo):
    plain = BuffaloLPack(_settings(model_dir, embed_flip=False, embed_batch_size=1))
    chips = np.stack([f.chip for f in pack.detect(photo)])
    session = ort.InferenceSession(str(onnx_files["w600k_r50.onnx"]))
    blob = ((chips.astype(np.float32) - 127.5) / 127.5).transpose(0, 3, 1, 2)
    expected = session.run(None, {"input.1": blob})[0]
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(plain.embed_chips(chips), expected, atol=1e-5)


def test_sessions_use_the_configured_thread_count(pack):
    # SCRFD's fixed-size session is derived from the first one and must keep its options.
    sessions = [pack._recognizer.session, *pack._detector.resolution_sessions.values()]
    assert [s.get_session_options().intra_op_num_threads for s in sessions] == [1] * len(sessions)


def test_missing_files_raise_model_not_available(tmp_path, onnx_files):
    _install({"w600k_r50.onnx": onnx_files["w600k_r50.onnx"]}, tmp_path / "buffalo_s")
    assert not BuffaloSPack.is_prepared(tmp_path)
    with pytest.raises(ModelNotAvailable, match="faceserve models pull buffalo_s"):
        BuffaloSPack.prepare(tmp_path)
    with pytest.raises(ModelNotAvailable, match="faceserve models pull buffalo_s"):
        BuffaloSPack(_settings(tmp_path))


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture(scope="module")
def release_server(tmp_path_factory, onnx_files):
    """A local stand-in for the release page: antelopev2.zip (nested) and a non-zip."""
    folder = tmp_path_factory.mktemp("release")
    with zipfile.ZipFile(folder / "antelopev2.zip", "w") as zf:
        for name, path in onnx_files.items():
            zf.write(path, f"antelopev2/{name}")
        zf.writestr("__MACOSX/antelopev2/._det_10g.onnx", b"resource fork")
    (folder / "buffalo_s.zip").write_text("<html>rate limited</html>")
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{{name}}.zip"
    server.shutdown()
    thread.join()


def test_pull_installs_the_onnx_files_flat_and_atomically(tmp_path, monkeypatch, release_server):
    stale = tmp_path / "antelopev2" / "old.onnx"
    stale.parent.mkdir()
    stale.write_bytes(b"from an earlier pull")
    calls: list[tuple[int, int]] = []
    target = pull_pack(
        "antelopev2",
        tmp_path,
        progress=lambda done, total: calls.append((done, total)),
        url_template=release_server,
    )
    assert target == tmp_path / "antelopev2"
    assert sorted(p.name for p in target.iterdir()) == [
        "2d106det.onnx",
        "det_10g.onnx",
        "w600k_r50.onnx",
    ]
    assert calls and calls[-1][0] == calls[-1][1] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["antelopev2"]  # no temp left over
    assert AntelopeV2Pack.is_prepared(tmp_path)
    assert len(AntelopeV2Pack(_settings(tmp_path)).detect(np.zeros((64, 64, 3), np.uint8))) == 2


def test_pull_rejects_what_is_not_a_pack_archive(tmp_path, monkeypatch, release_server):
    with pytest.raises(ModelNotAvailable, match="did not return a zip"):
        pull_pack("buffalo_s", tmp_path, url_template=release_server)
    with pytest.raises(ModelNotAvailable, match="HTTP 404"):
        pull_pack("buffalo_l", tmp_path, url_template=release_server)
    with pytest.raises(InvalidParameter):
        pull_pack("dlib-r29", tmp_path, url_template=release_server)
    assert list(tmp_path.iterdir()) == []


def test_pull_offline_says_what_failed_and_where_to_put_files(tmp_path, monkeypatch):
    refused = "http://127.0.0.1:9/{name}.zip"  # the discard port: refused at once
    with pytest.raises(ModelNotAvailable) as failure:
        pull_pack("buffalo_l", tmp_path / "models", url_template=refused)
    message = failure.value.message
    assert "downloading model pack buffalo_l" in message and "failed" in message
    assert "http://127.0.0.1:9/buffalo_l.zip" in message
    assert str(tmp_path / "models" / "buffalo_l") in message
    assert not BuffaloLPack.is_prepared(tmp_path / "models")
