"""Face quality signals: sharpness, brightness and a head-pose estimate from landmarks."""

from __future__ import annotations

import math

import numpy as np

from serve_app.vision.types import Pose

# Variance of the Laplacian (on the aligned chip) at which sharpness reads ~63 / 100.
_SHARPNESS_SCALE = 200.0


def _luma(chip: np.ndarray) -> np.ndarray:
    rgb = chip.astype(np.float32)
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def _inner(gray: np.ndarray) -> np.ndarray:
    # The central half of a chip is face, not background or hair.
    h, w = gray.shape
    return gray[h // 4 : h - h // 4, w // 4 : w - w // 4]


def sharpness(chip: np.ndarray) -> float:
    """0-100: a saturating map of the Laplacian's variance over the face's centre."""
    g = _inner(_luma(chip))
    lap = -4.0 * g[1:-1, 1:-1] + g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:]
    return float(100.0 * (1.0 - math.exp(-float(lap.var()) / _SHARPNESS_SCALE)))


def brightness(chip: np.ndarray) -> float:
    """0-100: mean luminance of the face's centre."""
    return float(_inner(_luma(chip)).mean() / 255.0 * 100.0)


def pose_from_eyes_nose(
    eye_a: np.ndarray, eye_b: np.ndarray, nose: np.ndarray, frontal_nose_drop: float = 0.85
) -> Pose:
    """Estimate yaw/pitch/roll (degrees) from the two eye centres and a nose point.

    Roll is the eye line's angle. After removing it, the nose's sideways offset from the eye
    midpoint, in inter-ocular distances, grows like tan(yaw) (depth ratio ~0.5), and its
    drop below the eyes shrinks when the head tilts back (`frontal_nose_drop`: ~0.85 for the
    nose base dlib marks, less for a nose tip). A geometric estimate good to ~10-15 degrees,
    enough to flag extreme poses.
    """
    left, right = (eye_a, eye_b) if eye_a[0] <= eye_b[0] else (eye_b, eye_a)
    d = right - left
    iod = float(math.hypot(d[0], d[1]))
    if iod < 1e-6:
        return Pose(0.0, 0.0, 0.0)
    roll = math.degrees(math.atan2(d[1], d[0]))
    c, s = d[0] / iod, d[1] / iod
    rel = nose - (left + right) / 2.0
    along = (rel[0] * c + rel[1] * s) / iod
    down = (-rel[0] * s + rel[1] * c) / iod
    yaw = math.degrees(math.atan(along / 0.5))
    pitch = math.degrees(math.atan((frontal_nose_drop - down) / 0.6))
    return Pose(yaw=yaw, pitch=pitch, roll=roll)
