"""Pixel positions to Rekognition's ratios, and each pack's landmarks to Rekognition's types
(only those the pack has)."""

from __future__ import annotations

import pytest

from serve_app.api.rekognition.shapes import Frame, landmark_plan


def test_each_pack_gives_the_landmarks_it_has() -> None:
    dlib = dict(landmark_plan("dlib-r29:1"))
    # dlib's order: image-right eye corners, image-left eye corners, nose base.
    assert dlib == {"eyeLeft": (2, 3), "eyeRight": (0, 1), "nose": (4,)}
    insightface = dict(landmark_plan("buffalo_l:1"))
    assert insightface == {
        "eyeLeft": (0,),
        "eyeRight": (1,),
        "nose": (2,),
        "mouthLeft": (3,),
        "mouthRight": (4,),
    }
    assert landmark_plan("no-such-pack:1") == ()


def test_positions_become_ratios_of_the_image() -> None:
    frame = Frame(400, 200, "dlib-r29:1")
    box = {"left": 100.0, "top": 50.0, "width": 200.0, "height": 100.0}
    assert frame.box(box) == {"Width": 0.5, "Height": 0.5, "Left": 0.25, "Top": 0.25}
    points = [[260, 80], [240, 80], [140, 80], [160, 80], [200, 120]]
    marks = {m["Type"]: (m["X"], m["Y"]) for m in frame.landmarks(points)}
    assert marks == {
        "eyeLeft": (pytest.approx(0.375), pytest.approx(0.4)),
        "eyeRight": (pytest.approx(0.625), pytest.approx(0.4)),
        "nose": (0.5, 0.6),
    }
