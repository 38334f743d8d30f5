"""The default pack on real photos: faces found, identities told apart."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from serve_app.config import Settings
from serve_app.errors import ModelNotAvailable
from serve_app.service import thresholds
from serve_app.vision.calibration import fmr_for_similarity
from serve_app.vision.image import decode_image
from serve_app.vision.packs.dlib_r29 import DlibR29Pack
from serve_app.vision.packs.registry import PACKS, load_pack, pack_class

from .conftest import insightface_image


def test_six_faces_in_t1(pack: DlibR29Pack, t1_bytes: bytes) -> None:
    image = decode_image(t1_bytes).pixels
    faces = pack.detect(image)
    assert len(faces) == 6
    height, width = image.shape[:2]
    areas = [f.box.area for f in faces]
    assert areas == sorted(areas, reverse=True)
    for face in faces:
        box = face.box
        assert box.left >= 0 and box.left + box.width <= width
        assert box.top >= 0 and box.top + box.height <= height
        assert 60 <= box.width <= 200
        # Landmarks (eyes and nose) sit inside the box, eyes above the nose.
        xs, ys = face.landmarks[:, 0], face.landmarks[:, 1]
        assert np.all((xs >= box.left) & (xs <= box.left + box.width))
        assert np.all((ys >= box.top) & (ys <= box.top + box.height))
        assert face.landmarks[4, 1] > face.landmarks[:4, 1].mean()
        assert 50 <= face.confidence <= 100
        assert face.chip.shape == (150, 150, 3) and face.chip.dtype == np.uint8
        q = face.quality
        assert 0 < q.sharpness <= 100 and 0 < q.brightness <= 100
        assert q.face_size == min(box.width, box.height)
        assert abs(q.pose.roll) < 45 and abs(q.pose.yaw) < 60
    vectors = pack.embed(faces)
    assert vectors.shape == (6, 128) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # Six different people: no pair reaches the compare (1:1) threshold.
    for a, b in itertools.combinations(range(6), 2):
        assert pack.similarity(vectors[a], vectors[b]) < thresholds.COMPARE


def test_detection_on_downscaled_copy_maps_boxes_back(settings: Settings, t1_bytes: bytes) -> None:
    from PIL import Image

    image = decode_image(t1_bytes).pixels
    big = np.asarray(Image.fromarray(image).resize((2560, 1772), Image.Resampling.BILINEAR))
    limited = DlibR29Pack(Settings(model_dir=settings.model_dir, detect_max_side=1280))
    small_faces = sorted(limited.detect(image), key=lambda f: f.box.left)
    big_faces = sorted(limited.detect(big), key=lambda f: f.box.left)
    assert len(big_faces) == len(small_faces) == 6
    # Same faces, in original-image pixels of each (HOG's window scales differ a little).
    for s, b in zip(small_faces, big_faces, strict=True):
        centre_s = np.array([s.box.left + s.box.width / 2, s.box.top + s.box.height / 2])
        centre_b = np.array([b.box.left + b.box.width / 2, b.box.top + b.box.height / 2])
        assert np.abs(centre_b / 2 - centre_s).max() <= 0.15 * s.box.width
        assert 0.75 <= b.box.width / (2 * s.box.width) <= 1.25
        assert np.abs(b.landmarks / 2 - s.landmarks).max() <= 0.1 * s.box.width


def test_astronaut_and_tom_hanks_have_one_face_each(
    pack: DlibR29Pack, astronaut_bytes: bytes
) -> None:
    assert len(pack.detect(decode_image(astronaut_bytes).pixels)) == 1
    hanks = decode_image(insightface_image("Tom_Hanks_54745.png").read_bytes(), None)
    # A 112x112 crop: small, but upsampling finds it.
    assert len(pack.detect(hanks.pixels)) == 1


def test_no_face_in_dogs(pack: DlibR29Pack, faces_dir: Path) -> None:
    dogs = decode_image((faces_dir / "no_faces" / "dlib" / "dogs.jpg").read_bytes()).pixels
    assert pack.detect(dogs) == []


def _people(faces_dir: Path) -> dict[str, list[Path]]:
    people: dict[str, list[Path]] = {}
    for sub in ("face_recognition", "deepface", "dlib_johns"):
        for path in sorted((faces_dir / "people" / sub).glob("*/*")):
            people.setdefault(f"{sub}/{path.parent.name}", []).append(path)
    return people


def test_same_person_matches_and_different_people_do_not(
    pack: DlibR29Pack, faces_dir: Path
) -> None:
    embedded: list[tuple[str, np.ndarray]] = []
    for person, paths in _people(faces_dir).items():
        for path in paths:
            faces = pack.detect(decode_image(path.read_bytes()).pixels)
            assert faces, f"no face found in {path}"
            embedded.append((person, pack.embed(faces[:1])[0]))
    assert len(embedded) >= 130
    same, different = [], []
    for (pa, va), (pb, vb) in itertools.combinations(embedded, 2):
        (same if pa == pb else different).append(pack.similarity(va, vb))
    same_arr, diff_arr = np.array(same), np.array(different)
    # At the compare (1:1) default, FMR 1e-3. Measured: every one of ~500 same-person pairs
    # matches, 2 of ~9,200 different pairs do (2e-4).
    assert np.mean(same_arr >= thresholds.COMPARE) >= 0.99
    assert np.mean(diff_arr >= thresholds.COMPARE) <= fmr_for_similarity(thresholds.COMPARE)
    assert np.median(same_arr) > 90 > 50 > np.median(diff_arr)


def test_registry_lists_packs_and_rejects_unknown(settings: Settings) -> None:
    assert {"dlib-r29", "buffalo_l", "buffalo_s", "antelopev2"} <= set(PACKS)
    assert load_pack(settings).model_version == "dlib-r29:1"
    from serve_app.errors import InvalidParameter

    with pytest.raises(InvalidParameter, match="known packs"):
        pack_class("nope")


def test_unprepared_model_dir_says_how_to_prepare(tmp_path: Path) -> None:
    with pytest.raises(ModelNotAvailable, match="faceserve models prepare"):
        DlibR29Pack(Settings(model_dir=tmp_path))


def test_prepare_is_idempotent_and_detects_a_stale_conversion(tmp_path: Path) -> None:
    target = DlibR29Pack.prepare(tmp_path)
    onnx_file = target / "dlib_face_recognition_resnet_v1.onnx"
    stamp = onnx_file.stat().st_mtime_ns
    DlibR29Pack.prepare(tmp_path)
    assert onnx_file.stat().st_mtime_ns == stamp  # not converted again
    (target / "manifest.json").write_text('{"source_sha256": "something else"}')
    assert not DlibR29Pack.is_prepared(tmp_path)


def test_concurrent_detection_from_many_threads_is_safe(pack: DlibR29Pack, t1_bytes: bytes) -> None:
    """A replica detects for several requests at once (one thread each); dlib's detector is
    not thread-safe, and sharing it unguarded crashed the process with SIGSEGV."""
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    # Images of different sizes: the crash came from dlib resizing shared scratch buffers.
    t1 = decode_image(t1_bytes).pixels
    sizes = [(1280, 886), (1100, 761), (960, 664), (1500, 1038)]
    images = [np.asarray(Image.fromarray(t1).resize(size)) for size in sizes]
    with ThreadPoolExecutor(max_workers=8) as pool:
        counts = list(pool.map(lambda i: len(pack.detect(images[i % 4])), range(48)))
    assert all(count >= 5 for count in counts)
