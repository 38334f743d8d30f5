"""The converted CNN face detector finds the same faces as dlib's own, with the same scores."""

from __future__ import annotations

from pathlib import Path

import dlib
import numpy as np
import pytest
from PIL import Image

from serve_app.config import Settings
from serve_app.errors import InvalidParameter
from serve_app.vision.convert.dlib_format import DlibFormatError
from serve_app.vision.convert.dlib_mmod import feature_to_input, parse_dlib_mmod
from serve_app.vision.image import decode_image
from serve_app.vision.packs.dlib_r29 import (
    MMOD_FILE,
    MMOD_ONNX_FILE,
    DlibR29Pack,
    shipped_model_path,
)
from serve_app.vision.packs.mmod_detector import MmodDetector, tiled_pyramid_rects

from .conftest import insightface_image

# dlib's CNN costs ~2 s per 500 px photo here: compare on copies no longer than this.
PARITY_SIDE = 400


@pytest.fixture(scope="module")
def reference() -> dlib.cnn_face_detection_model_v1:
    return dlib.cnn_face_detection_model_v1(str(shipped_model_path(MMOD_FILE)))


@pytest.fixture(scope="module")
def detector(model_dir: Path) -> MmodDetector:
    return MmodDetector(DlibR29Pack.pack_dir(model_dir) / MMOD_ONNX_FILE, threads=2)


def _small(pixels: np.ndarray, side: int = PARITY_SIDE) -> np.ndarray:
    scale = side / max(pixels.shape[:2])
    if scale >= 1:
        return np.ascontiguousarray(pixels)
    size = (round(pixels.shape[1] * scale), round(pixels.shape[0] * scale))
    return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BILINEAR))


def _assert_same_faces(reference, detector: MmodDetector, pixels: np.ndarray, name: str) -> int:
    expected = sorted(
        ((d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom()), d.confidence)
        for d in reference(pixels, 0)
    )
    got = sorted(((d.left, d.top, d.right, d.bottom), d.score) for d in detector.detect(pixels))
    assert len(got) == len(expected), f"{name}: dlib {expected}, onnx {got}"
    for (box_e, score_e), (box_g, score_g) in zip(expected, got, strict=True):
        assert np.abs(np.subtract(box_e, box_g)).max() <= 2, f"{name}: {box_e} vs {box_g}"
        assert abs(score_e - score_g) <= 1e-3, f"{name}: score {score_e} vs {score_g}"
    return len(got)


def test_parsed_network_is_dlibs_mmod_face_detector() -> None:
    net = parse_dlib_mmod(shipped_model_path(MMOD_FILE).read_bytes())
    shapes = [(layer.weights.shape, layer.stride, layer.padding) for layer in net.layers]
    assert shapes == [
        ((16, 3, 5, 5), (2, 2), (0, 0)),
        ((32, 16, 5, 5), (2, 2), (0, 0)),
        ((32, 32, 5, 5), (2, 2), (0, 0)),
        ((45, 32, 5, 5), (1, 1), (2, 2)),
        ((45, 45, 5, 5), (1, 1), (2, 2)),
        ((45, 45, 5, 5), (1, 1), (2, 2)),
        ((1, 45, 9, 9), (1, 1), (4, 4)),
    ]
    assert [layer.relu for layer in net.layers] == [True] * 6 + [False]
    assert net.detector_windows == [(80, 80)]
    assert feature_to_input(net) == (8.0, 14.0, 8.0, 14.0)


def test_truncated_or_foreign_files_are_refused() -> None:
    data = shipped_model_path(MMOD_FILE).read_bytes()
    with pytest.raises(DlibFormatError):
        parse_dlib_mmod(data[: len(data) // 2])
    resnet = shipped_model_path("dlib_face_recognition_resnet_model_v1.dat").read_bytes()
    with pytest.raises(DlibFormatError, match="loss_mmod_"):
        parse_dlib_mmod(resnet)


def test_tiled_pyramid_layout_keeps_levels_apart() -> None:
    rects, height, width = tiled_pyramid_rects(346, 500, 6, 10, 11)
    assert rects[0] == (11, 11, 510, 356) and width == 522
    sizes = [(r[2] - r[0] + 1, r[3] - r[1] + 1) for r in rects]
    assert sizes[1] == (416, 288)  # floor(5/6 * 500), floor(5/6 * 346)
    for i, a in enumerate(rects):
        assert min(a[0], a[1]) >= 0 and a[2] < width and a[3] < height
        for b in rects[i + 1 :]:
            apart = a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1]
            assert apart, f"levels {a} and {b} overlap"


def test_same_faces_as_dlib_on_photos_shipped_with_packages(reference, detector) -> None:
    from skimage import data

    t1 = decode_image(insightface_image("t1.jpg").read_bytes()).pixels
    photos = {
        # Its faces are ~100 px at full size: two native-resolution 640x480 crops keep them.
        "t1.jpg left": t1[40:520, :640],
        "t1.jpg right": t1[40:520, 640:],
        "astronaut": data.astronaut(),
        # A 112x112 crop: enlarged so its face is above the 80 px detector window.
        "Tom_Hanks": np.asarray(
            Image.open(insightface_image("Tom_Hanks_54745.png")).convert("RGB").resize((336, 336))
        ),
        "mask_white.jpg": decode_image(insightface_image("mask_white.jpg").read_bytes()).pixels,
    }
    found = {
        name: _assert_same_faces(reference, detector, _small(p, 640), name)
        for name, p in photos.items()
    }
    assert found["astronaut"] == 1 and found["Tom_Hanks"] == 1
    assert found["t1.jpg left"] == found["t1.jpg right"] == 3


def test_same_faces_as_dlib_on_group_and_people_photos(reference, detector, faces_dir) -> None:
    paths = [
        *sorted((faces_dir / "groups").glob("*/*.jpg")),
        *sorted((faces_dir / "people" / "face_recognition").glob("*/*.jp*g"))[::4],
        *sorted((faces_dir / "people" / "deepface").glob("*/*.jpg"))[::12],
    ]
    assert len(paths) >= 10
    total = sum(
        _assert_same_faces(reference, detector, _small(decode_image(p.read_bytes()).pixels), p.name)
        for p in paths
    )
    # The comparison covered a real number of faces (21 at this size when written).
    assert total >= 15


def test_pack_detects_with_either_detector_and_embeds_alike(
    settings: Settings, t1_bytes: bytes
) -> None:
    pack = DlibR29Pack(settings)
    image = decode_image(t1_bytes).pixels
    hog = pack.detect(image, detector="hog")
    cnn = pack.detect(image, detector="cnn")
    assert len(hog) == len(cnn) == 6
    # The same people: each CNN face's embedding matches one HOG face's (same aligner).
    v_hog, v_cnn = pack.embed(hog), pack.embed(cnn)
    best = [max(pack.similarity(c, h) for h in v_hog) for c in v_cnn]
    assert min(best) >= 90
    assert all(50 <= f.confidence <= 100 for f in cnn)
    with pytest.raises(InvalidParameter, match="hog, cnn"):
        pack.detect(image, detector="yolo")


def test_cnn_is_the_pack_detector_when_configured(settings: Settings, astronaut_bytes) -> None:
    pack = DlibR29Pack(Settings(model_dir=settings.model_dir, detector="cnn"))
    assert pack.detector == "cnn"
    faces = pack.detect(decode_image(astronaut_bytes).pixels)
    assert len(faces) == 1 and faces[0].chip.shape == (150, 150, 3)
    with pytest.raises(InvalidParameter):
        DlibR29Pack(Settings(model_dir=settings.model_dir, detector="nope"))


def test_largest_only_returns_the_largest_face(settings: Settings, t1_bytes: bytes) -> None:
    image = decode_image(t1_bytes).pixels
    big = np.asarray(Image.fromarray(image).resize((2560, 1772), Image.Resampling.BILINEAR))
    for name in ("hog", "cnn"):
        pack = DlibR29Pack(Settings(model_dir=settings.model_dir, detector=name))
        every = pack.detect(big)
        (largest,) = pack.detect(big, largest_only=True)
        first = every[0].box
        assert abs(largest.box.left - first.left) <= 0.1 * first.width, name
        assert abs(largest.box.width - first.width) <= 0.2 * first.width, name
