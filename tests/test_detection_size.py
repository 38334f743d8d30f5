"""Detection at the size the image needs: reduced JPEG decodes and cheap passes for queries."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from serve_app.service.analysis import detect_faces
from serve_app.vision.image import decode_image
from serve_app.vision.packs.dlib_r29 import DlibR29Pack


def _jpeg(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=92)
    return out.getvalue()


def test_large_jpeg_faces_come_back_in_its_own_pixels(pack: DlibR29Pack, t1_bytes: bytes) -> None:
    t1 = decode_image(t1_bytes).pixels
    big = np.asarray(Image.fromarray(t1).resize((3840, 2658), Image.Resampling.BILINEAR))
    blob = _jpeg(big)
    assert decode_image(blob, min_side=pack.settings.detect_max_side).scale == 2.0
    found = detect_faces(pack, blob)
    assert (found.width, found.height) == (3840, 2658)
    reference = sorted(pack.detect(decode_image(blob).pixels), key=lambda f: f.box.left)
    faces = sorted(found.faces, key=lambda f: f.box.left)
    assert len(faces) == len(reference) == 6
    for a, b in zip(faces, reference, strict=True):
        # Same face, same place, in full-size pixels. HOG may pick a neighbouring window
        # scale (the 1280 px copies differ slightly), the landmarks barely move.
        centre_a = np.array([a.box.left + a.box.width / 2, a.box.top + a.box.height / 2])
        centre_b = np.array([b.box.left + b.box.width / 2, b.box.top + b.box.height / 2])
        assert np.abs(centre_a - centre_b).max() <= 0.15 * b.box.width
        assert 0.75 <= a.box.width / b.box.width <= 1.25
        assert a.quality.face_size == min(a.box.width, a.box.height)
        assert np.abs(a.landmarks - b.landmarks).max() <= 0.05 * b.box.width
    # The chips give the same identities as chips cut from the full-size decode.
    for va, vb in zip(pack.embed(faces), pack.embed(reference), strict=True):
        assert pack.similarity(va, vb) >= 95


def test_query_with_one_large_face_needs_only_the_cheap_pass(pack: DlibR29Pack) -> None:
    from skimage import data

    # The astronaut enlarged to an album-sized photo: one large face.
    photo = np.asarray(Image.fromarray(data.astronaut()).resize((1600, 1600)))
    calls: list[int] = []
    real = pack._hog

    def spy(image, max_side, enlarge=True):
        calls.append(max_side)
        return real(image, max_side, enlarge)

    pack._hog = spy  # type: ignore[method-assign]
    try:
        (face,) = pack.detect(photo, detector="hog", largest_only=True)
        assert calls == [640]
        calls.clear()
        every = pack.detect(photo, detector="hog")
        assert calls == [pack.settings.detect_max_side]
    finally:
        del pack._hog
    assert len(every) == 1
    assert abs(face.box.left - every[0].box.left) <= 0.1 * every[0].box.width
