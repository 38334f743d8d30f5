"""The parameter checks every service shares: counts, thresholds, ids, metadata.

Each limit is declared once here (or beside the operation it bounds); the REST models take
their `Field` constraints from the same constants, and the Rekognition surface checks
botocore's model first, so these checks are the last word for every caller.
"""

from __future__ import annotations

from typing import Any

from serve_app.errors import InvalidParameter

MAX_INDEX_FACES = 100  # faces indexed from one image (Rekognition's MaxFaces)
MAX_SEARCH_RESULTS = 4096  # faces a search returns (Rekognition's MaxFaces)
MAX_PERSON_RESULTS = 500  # persons a search returns (Rekognition's MaxUsers)
DEFAULT_SEARCH_RESULTS = 10
MAX_PAGE = 4096  # items one listing page may hold
DEFAULT_PAGE = 100
MAX_EXTERNAL_ID = 255
MAX_FACE_IDS = 100  # face ids in one call (Rekognition's FaceIds)
MAX_PERSON_FACES = 100  # faces of one person (Rekognition's faces per user)


def count(name: str, value: Any, high: int, low: int = 1) -> int:
    """An integer in [low, high], else InvalidParameter naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParameter(f"{name} must be an integer between {low} and {high}")
    if not low <= value <= high:
        raise InvalidParameter(f"{name} must be between {low} and {high}, got {value}")
    return value


def threshold(value: Any, default: float) -> float:
    """A similarity threshold in [0, 100]; `default` when None."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidParameter(f"threshold must be a number between 0 and 100, got {value!r}")
    if not 0.0 <= value <= 100.0:  # also rejects NaN
        raise InvalidParameter(f"threshold must be between 0 and 100, got {value}")
    return float(value)


def search(
    threshold_value: Any, max_results: Any, default_threshold: float, most: int
) -> tuple[float, int]:
    """A search's (threshold, k), with the defaults filled in and both checked."""
    k = DEFAULT_SEARCH_RESULTS if max_results is None else max_results
    return threshold(threshold_value, default_threshold), count("max_results", k, most)


def external_id(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_EXTERNAL_ID:
        raise InvalidParameter(f"external_image_id must be 1 to {MAX_EXTERNAL_ID} characters")
    return value


def metadata(value: Any) -> dict:
    if value is not None and not isinstance(value, dict):
        raise InvalidParameter("metadata must be a JSON object")
    return value or {}


def face_ids(value: Any) -> list[str]:
    """A list of 1 to MAX_FACE_IDS face ids (each id is checked by the store)."""
    if isinstance(value, str | bytes) or not isinstance(value, list | tuple):
        raise InvalidParameter("face_ids must be a list of face ids")
    if not 1 <= len(value) <= MAX_FACE_IDS:
        raise InvalidParameter(f"face_ids must hold 1 to {MAX_FACE_IDS} face ids, got {len(value)}")
    return list(value)
