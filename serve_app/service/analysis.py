"""Stateless operations: detect faces in an image, compare the faces of two images."""

from __future__ import annotations

from dataclasses import dataclass

from serve_app.config import ImageLimits
from serve_app.errors import InvalidParameter
from serve_app.service import params, thresholds
from serve_app.vision.image import decode_image
from serve_app.vision.packs.base import ModelPack
from serve_app.vision.types import DetectedFace


@dataclass(frozen=True)
class ImageFaces:
    width: int
    height: int
    faces: list[DetectedFace]

    def to_dict(self) -> dict:
        return {
            "image": {"width": self.width, "height": self.height},
            "faces": [f.to_dict() for f in self.faces],
        }


@dataclass(frozen=True)
class Comparison:
    """The largest face of the source image against the largest face of the target."""

    similarity: float
    threshold: float
    source_face: DetectedFace
    target_face: DetectedFace

    @property
    def match(self) -> bool:
        return self.similarity >= self.threshold

    def to_dict(self) -> dict:
        return {
            "similarity": round(self.similarity, 3),
            "threshold": self.threshold,
            "match": self.match,
            "source_face": self.source_face.to_dict(),
            "target_face": self.target_face.to_dict(),
        }


def detect_faces(
    pack: ModelPack,
    data: bytes,
    limits: ImageLimits | None = None,
    *,
    detector: str | None = None,
    largest_only: bool = False,
) -> ImageFaces:
    """Decode (with limits) and detect; faces come largest first, in the image's pixels.

    A large JPEG is decoded only as large as detection scans it (detect_max_side), which
    still leaves faces the resolution their chips need. `detector` and `largest_only` go to
    the pack (`largest_only`: a search query, only its largest face matters).
    """
    image = decode_image(data, limits, min_side=pack.settings.detect_max_side)
    found = pack.detect(image.pixels, detector=detector, largest_only=largest_only)
    return ImageFaces(image.width, image.height, [f.scaled(image.scale) for f in found])


def _largest(pack: ModelPack, data: bytes, role: str, limits: ImageLimits | None) -> DetectedFace:
    faces = detect_faces(pack, data, limits).faces
    if not faces:
        raise InvalidParameter(f"no face detected in the {role} image")
    return faces[0]


def compare_largest(
    pack: ModelPack,
    source: bytes,
    target: bytes,
    threshold: float = thresholds.COMPARE,
    limits: ImageLimits | None = None,
) -> Comparison:
    """Calibrated similarity (0-100) of the two images' largest faces."""
    threshold = params.threshold(threshold, thresholds.COMPARE)
    a = _largest(pack, source, "source", limits)
    b = _largest(pack, target, "target", limits)
    vectors = pack.embed([a, b])
    return Comparison(pack.similarity(vectors[0], vectors[1]), threshold, a, b)
