"""Which detected faces are worth indexing, and why the others are not.

Reasons use Amazon Rekognition's names so both APIs report the same thing. As in Rekognition,
low-quality faces are filtered first; if more than `max_faces` remain, the smallest go.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from serve_app.errors import InvalidParameter
from serve_app.vision.types import DetectedFace


class QualityFilter(StrEnum):
    NONE = "NONE"
    AUTO = "AUTO"
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"

    @classmethod
    def parse(cls, value: str | None) -> QualityFilter:
        if value is None:
            return cls.AUTO
        try:
            return cls(str(value).upper())
        except ValueError:
            allowed = ", ".join(m.value for m in cls)
            raise InvalidParameter(
                f"quality_filter must be one of {allowed}, got {value!r}"
            ) from None


class Reason(StrEnum):
    EXCEEDS_MAX_FACES = "EXCEEDS_MAX_FACES"
    EXTREME_POSE = "EXTREME_POSE"
    LOW_BRIGHTNESS = "LOW_BRIGHTNESS"
    LOW_SHARPNESS = "LOW_SHARPNESS"
    LOW_CONFIDENCE = "LOW_CONFIDENCE"
    SMALL_BOUNDING_BOX = "SMALL_BOUNDING_BOX"
    LOW_FACE_QUALITY = "LOW_FACE_QUALITY"


@dataclass(frozen=True)
class QualityBar:
    min_confidence: float
    min_sharpness: float
    min_brightness: float
    max_brightness: float
    min_face_size: float
    max_angle: float  # |yaw| and |pitch|, degrees


# AUTO is LOW: a group photo's small, turned faces are still worth finding again.
BARS: dict[QualityFilter, QualityBar] = {
    QualityFilter.LOW: QualityBar(60, 3, 5, 98, 24, 60),
    QualityFilter.MEDIUM: QualityBar(75, 10, 12, 95, 40, 45),
    QualityFilter.HIGH: QualityBar(90, 25, 20, 90, 64, 30),
}
BARS[QualityFilter.AUTO] = BARS[QualityFilter.LOW]


def quality_reasons(face: DetectedFace, level: QualityFilter) -> list[Reason]:
    """Why `face` fails the `level` bar (empty if it passes)."""
    if level is QualityFilter.NONE:
        return []
    bar, q = BARS[level], face.quality
    reasons = []
    if face.confidence < bar.min_confidence:
        reasons.append(Reason.LOW_CONFIDENCE)
    if q.sharpness < bar.min_sharpness:
        reasons.append(Reason.LOW_SHARPNESS)
    if not bar.min_brightness <= q.brightness <= bar.max_brightness:
        reasons.append(Reason.LOW_BRIGHTNESS)
    if q.face_size < bar.min_face_size:
        reasons.append(Reason.SMALL_BOUNDING_BOX)
    if max(abs(q.pose.yaw), abs(q.pose.pitch)) > bar.max_angle:
        reasons.append(Reason.EXTREME_POSE)
    if len(reasons) >= 2:
        reasons.append(Reason.LOW_FACE_QUALITY)
    return reasons


def select_faces(
    faces: list[DetectedFace], max_faces: int | None, level: QualityFilter
) -> tuple[list[int], dict[int, list[Reason]]]:
    """Indexes of faces to index (largest first) and, for the rest, their reasons."""
    rejected: dict[int, list[Reason]] = {}
    passing = []
    for i, face in enumerate(faces):
        reasons = quality_reasons(face, level)
        if reasons:
            rejected[i] = reasons
        else:
            passing.append(i)
    passing.sort(key=lambda i: faces[i].box.area, reverse=True)
    if max_faces is not None:
        for i in passing[max_faces:]:
            rejected[i] = [Reason.EXCEEDS_MAX_FACES]
        passing = passing[:max_faces]
    return passing, rejected
