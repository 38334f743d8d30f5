"""Our records and results in Rekognition's JSON shapes.

Positions become ratios of the image's size, as Rekognition gives them. Only what our model
packs measure is returned: bounding box, confidence, the landmarks the pack has, pose and
quality. Attributes they cannot compute (AgeRange, Emotions, Gender, Smile, ...) are left
out, whatever `Attributes` asks for, rather than invented.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any

from serve_app.errors import FaceserveError
from serve_app.store.records import FaceRecord
from serve_app.vision.packs.registry import pack_class
from serve_app.vision.types import DetectedFace

ACCOUNT_ID = "000000000000"  # ARNs need one; a self-hosted service has no AWS account

# Rekognition type -> alternatives of pack landmark names, averaged when all are present.
# Rekognition's eyeLeft/mouthLeft are the points on the image's left (the subject's right
# eye): AWS's own responses have eyeLeft.X < eyeRight.X for a frontal face. Our packs also
# name landmarks as seen in the image, so left maps to left. dlib-r29 has eye corners and the
# base of the nose (its "nose", a little below Rekognition's tip), and no mouth points.
_LANDMARKS: dict[str, tuple[tuple[str, ...], ...]] = {
    "eyeLeft": (("eye_left",), ("eye_left_outer", "eye_left_inner")),
    "eyeRight": (("eye_right",), ("eye_right_outer", "eye_right_inner")),
    "nose": (("nose",), ("nose_base",)),
    "mouthLeft": (("mouth_left",),),
    "mouthRight": (("mouth_right",),),
}


@cache
def landmark_plan(model_version: str) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """For a model version ("dlib-r29:1"): (Rekognition type, indexes of our points)."""
    try:
        names = pack_class(model_version.split(":")[0]).landmark_names
    except FaceserveError:
        return ()
    plan = []
    for kind, alternatives in _LANDMARKS.items():
        for sources in alternatives:
            if all(s in names for s in sources):
                plan.append((kind, tuple(names.index(s) for s in sources)))
                break
    return tuple(plan)


class Frame:
    """Pixel positions in one image -> Rekognition's ratios of its width and height."""

    def __init__(self, width: int, height: int, model_version: str) -> None:
        self.width = width
        self.height = height
        self.model_version = model_version

    def box(self, box: Any) -> dict[str, float]:
        """`box`: a BoundingBox or its dict form, in pixels."""
        get = box.get if isinstance(box, dict) else lambda k: getattr(box, k)
        return {
            "Width": float(get("width")) / self.width,
            "Height": float(get("height")) / self.height,
            "Left": float(get("left")) / self.width,
            "Top": float(get("top")) / self.height,
        }

    def landmarks(self, points: Sequence[Sequence[float]]) -> list[dict[str, Any]]:
        result = []
        for kind, indexes in landmark_plan(self.model_version):
            if max(indexes) >= len(points):
                continue
            xs = [float(points[i][0]) for i in indexes]
            ys = [float(points[i][1]) for i in indexes]
            result.append(
                {
                    "Type": kind,
                    "X": sum(xs) / len(xs) / self.width,
                    "Y": sum(ys) / len(ys) / self.height,
                }
            )
        return result

    def face_detail(self, face: DetectedFace | FaceRecord) -> dict[str, Any]:
        """FaceDetail (also ComparedFace): box, confidence, landmarks, pose, quality."""
        if isinstance(face, DetectedFace):
            box, points, confidence = face.box, face.landmarks, face.confidence
            quality = face.quality.to_dict()
        else:
            box, points, confidence = face.bounding_box, face.landmarks, face.confidence
            quality = face.quality or {}
        detail: dict[str, Any] = {
            "BoundingBox": self.box(box),
            "Confidence": float(confidence),
            "Landmarks": self.landmarks(points),
        }
        pose = quality.get("pose")
        if pose:
            detail["Pose"] = {
                "Roll": float(pose["roll"]),
                "Yaw": float(pose["yaw"]),
                "Pitch": float(pose["pitch"]),
            }
        if "brightness" in quality and "sharpness" in quality:
            detail["Quality"] = {
                "Brightness": float(quality["brightness"]),
                "Sharpness": float(quality["sharpness"]),
            }
        return detail


def face(record: FaceRecord, frame: Frame | None = None) -> dict[str, Any]:
    """Face: an indexed face as stored. Its box needs the size of the image it came from
    (`frame`, or the record's image size); without one the box is left out."""
    result: dict[str, Any] = {"FaceId": record.face_id}
    width = getattr(record, "image_width", None)
    height = getattr(record, "image_height", None)
    if frame is None and width and height:
        frame = Frame(width, height, "")
    if frame is not None:
        result["BoundingBox"] = frame.box(record.bounding_box)
    result["ImageId"] = record.image_id
    if record.external_image_id is not None:
        result["ExternalImageId"] = record.external_image_id
    result["Confidence"] = float(record.confidence)
    if record.person_id is not None:
        result["UserId"] = record.person_id
    return result


def face_match(similarity: float, record: FaceRecord) -> dict[str, Any]:
    return {"Similarity": float(similarity), "Face": face(record)}


def timestamp(value: datetime) -> float:
    """Rekognition's JSON timestamps are epoch seconds."""
    return value.timestamp()


def collection_arn(region: str, collection: str) -> str:
    # Rekognition's own form, without the "arn:" prefix (as CreateCollection returns it).
    return f"aws:rekognition:{region}:{ACCOUNT_ID}:collection/{collection}"


def user(person: Any) -> dict[str, str]:
    """User / MatchedUser: the id and a status (faces associated: ACTIVE, none: CREATED)."""
    status = "ACTIVE" if getattr(person, "face_count", 0) else "CREATED"
    return {"UserId": person.person_id, "UserStatus": status}
