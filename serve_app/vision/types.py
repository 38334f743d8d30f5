"""Typed result shapes of the face pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class BoundingBox:
    """A face box in pixels of the original image (may extend past its edges)."""

    left: float
    top: float
    width: float
    height: float

    @property
    def area(self) -> float:
        return self.width * self.height

    def to_dict(self) -> dict[str, float]:
        return {
            "left": round(self.left, 2),
            "top": round(self.top, 2),
            "width": round(self.width, 2),
            "height": round(self.height, 2),
        }


@dataclass(frozen=True)
class Pose:
    """Head pose in degrees, estimated from landmarks (a rough estimate, not a measurement)."""

    yaw: float
    pitch: float
    roll: float

    def to_dict(self) -> dict[str, float]:
        return {
            "yaw": round(self.yaw, 1),
            "pitch": round(self.pitch, 1),
            "roll": round(self.roll, 1),
        }


@dataclass(frozen=True)
class FaceQuality:
    """Signals for deciding whether a face is worth indexing.

    sharpness and brightness are 0-100 (Rekognition's scale); face_size is the shorter side
    of the box in pixels.
    """

    sharpness: float
    brightness: float
    face_size: float
    pose: Pose

    def to_dict(self) -> dict[str, Any]:
        return {
            "sharpness": round(self.sharpness, 2),
            "brightness": round(self.brightness, 2),
            "face_size": round(self.face_size, 1),
            "pose": self.pose.to_dict(),
        }


@dataclass(frozen=True)
class DetectedFace:
    """One face found in an image.

    `landmarks` are 5 (x, y) points in original-image pixels, in the order named by the
    pack's `landmark_names`. `chip` is the aligned crop the pack's embedder expects; it is
    carried to the embedder and never serialised.
    """

    box: BoundingBox
    landmarks: np.ndarray
    confidence: float
    quality: FaceQuality
    chip: np.ndarray = field(repr=False, compare=False)

    def scaled(self, factor: float) -> DetectedFace:
        """The same face with its box, landmarks and size in pixels `factor` times larger
        (found on a reduced decode, reported in the image's own pixels); chip unchanged."""
        if factor == 1.0:
            return self
        b = self.box
        box = BoundingBox(b.left * factor, b.top * factor, b.width * factor, b.height * factor)
        q = self.quality
        quality = FaceQuality(q.sharpness, q.brightness, q.face_size * factor, q.pose)
        landmarks = (self.landmarks * factor).astype(np.float32)
        return DetectedFace(box, landmarks, self.confidence, quality, self.chip)

    def to_dict(self) -> dict[str, Any]:
        return {
            "bounding_box": self.box.to_dict(),
            "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks],
            "confidence": round(self.confidence, 3),
            "quality": self.quality.to_dict(),
        }
