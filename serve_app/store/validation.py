"""Checks on everything a caller hands the store, so bad input is a 4xx and never a SQL error."""

from __future__ import annotations

import base64
import binascii
import math
import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from serve_app.errors import InvalidParameter

# Rekognition's CollectionId pattern.
COLLECTION_NAME_PATTERN = r"[a-zA-Z0-9_.\-]{1,255}"
_COLLECTION_NAME = re.compile(COLLECTION_NAME_PATTERN)
_CURSOR = re.compile(r"v1:(\d{1,18})")
# Rekognition's UserId and ClientRequestToken patterns.
_PERSON_ID = re.compile(r"[a-zA-Z0-9_.\-:]{1,128}")
_REQUEST_TOKEN = re.compile(r"[a-zA-Z0-9\-_]{1,64}")
_PERSON_CURSOR = re.compile(r"p1:([a-zA-Z0-9_.\-:]{1,128})")
MAX_IDS = 4096
MAX_TEXT = 255


def collection_name(name: object) -> str:
    if not isinstance(name, str) or not _COLLECTION_NAME.fullmatch(name):
        raise InvalidParameter(
            f"invalid collection name {name!r}: use 1-255 characters from a-z A-Z 0-9 _ . -"
        )
    return name


def person_id(value: object, what: str = "person_id") -> str:
    if not isinstance(value, str) or not _PERSON_ID.fullmatch(value):
        raise InvalidParameter(
            f"invalid {what} {str(value)[:140]!r}: use 1-128 characters from a-z A-Z 0-9 _ . - :"
        )
    return value


def request_token(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _REQUEST_TOKEN.fullmatch(value):
        raise InvalidParameter(
            f"invalid request token {str(value)[:70]!r}: use 1-64 characters from a-z A-Z 0-9 - _"
        )
    return value


def face_ids(ids: Iterable[object]) -> list[str]:
    """Canonical uuid strings, duplicates dropped, order kept."""
    if isinstance(ids, str | bytes):
        raise InvalidParameter("face ids must be a list of ids, not one string")
    result = list(dict.fromkeys(face_id(i) for i in ids))
    if len(result) > MAX_IDS:
        raise InvalidParameter(f"at most {MAX_IDS} face ids per request, got {len(result)}")
    return result


def face_id(value: object) -> str:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, str) and len(value) <= 64:
        try:
            return str(uuid.UUID(value))
        except ValueError:
            pass
    raise InvalidParameter(f"invalid face id {value!r}: expected a UUID")


def short_text(what: str, value: object, *, required: bool) -> str | None:
    if value is None and not required:
        return None
    if (
        not isinstance(value, str)
        or not value
        or len(value) > MAX_TEXT
        or "\x00" in value
        or any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    ):
        raise InvalidParameter(f"{what} must be a non-empty string of at most {MAX_TEXT} chars")
    return value


def positive_int(what: str, value: object, *, maximum: int) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | np.integer)
        or not 0 < value <= maximum
    ):
        raise InvalidParameter(f"{what} must be an integer from 1 to {maximum}, got {value!r}")
    return int(value)


def cosine(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating):
        raise InvalidParameter(f"min_cosine must be a number, got {value!r}")
    value = float(value)
    if not -1.0 <= value <= 1.0:  # also rejects NaN
        raise InvalidParameter(f"min_cosine must be between -1 and 1, got {value!r}")
    return value


def json_object(what: str, value: object) -> dict[str, Any]:
    """A JSON object PostgreSQL's jsonb can hold: no NUL characters, lone surrogates or
    non-finite numbers anywhere inside (each would be a database error, not a 4xx)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidParameter(f"{what} must be a JSON object")
    _check_json(what, value, depth=0)
    return dict(value)


def _check_json(what: str, value: object, depth: int) -> None:
    if depth > 32:
        raise InvalidParameter(f"{what} is nested too deeply (at most 32 levels)")
    if isinstance(value, str):
        if "\x00" in value or any(0xD800 <= ord(c) <= 0xDFFF for c in value):
            raise InvalidParameter(f"{what} holds a NUL character or a lone surrogate")
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidParameter(f"{what} holds a non-finite number")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidParameter(f"{what} keys must be strings")
            _check_json(what, key, depth + 1)
            _check_json(what, item, depth + 1)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_json(what, item, depth + 1)
    else:
        raise InvalidParameter(f"{what} holds a value that is not JSON")


def embedding(value: object, dim: int, collection: str) -> np.ndarray:
    """A finite, non-zero float32 vector of the collection's dimension."""
    try:
        vector = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        raise InvalidParameter("an embedding must be a vector of numbers") from None
    if vector.ndim != 1 or vector.shape[0] != dim:
        raise InvalidParameter(
            f"embedding of shape {vector.shape} does not fit collection {collection!r}, "
            f"which holds {dim}-dimensional embeddings"
        )
    if not np.all(np.isfinite(vector)) or not np.any(vector):
        raise InvalidParameter("an embedding must be finite and not all zeros")
    return vector


def confidence(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise InvalidParameter(f"confidence must be a number, got {value!r}")
    if not math.isfinite(float(value)):
        raise InvalidParameter("confidence must be finite")
    return float(value)


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"v1:{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: object) -> int:
    """The seq a cursor from `encode_cursor` points after."""
    match = _CURSOR.fullmatch(_cursor_text(cursor))
    if match:
        return int(match.group(1))
    raise InvalidParameter(f"invalid pagination cursor {str(cursor)[:80]!r}")


def encode_person_cursor(person_id: str) -> str:
    return base64.urlsafe_b64encode(f"p1:{person_id}".encode()).decode().rstrip("=")


def decode_person_cursor(cursor: object) -> str:
    """The person id a cursor from `encode_person_cursor` points after."""
    match = _PERSON_CURSOR.fullmatch(_cursor_text(cursor))
    if match:
        return match.group(1)
    raise InvalidParameter(f"invalid pagination cursor {str(cursor)[:80]!r}")


def _cursor_text(cursor: object) -> str:
    if isinstance(cursor, str) and len(cursor) <= 200:
        try:
            return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            pass
    return ""
