"""Request validation read from botocore's Rekognition service model, not written by hand.

Every input is checked against its operation's input shape: unknown and missing members,
JSON types, string and list lengths, numeric ranges, enums and id patterns. Blobs arrive as
base64 text and leave as bytes. Violations are InvalidParameterException naming the
parameter (ImageTooLargeException for an image blob over its limit), all listed at once.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from functools import cache
from typing import Any

import botocore.session
from botocore.model import OperationModel, ServiceModel, Shape

from serve_app.api.rekognition.errors import RekognitionError, invalid_parameter

_IMAGE_BLOB = "ImageBlob"


@cache
def service_model() -> ServiceModel:
    """The Rekognition model of the installed botocore (loaded once)."""
    return botocore.session.get_session().get_service_model("rekognition")


def operation_model(name: str) -> OperationModel:
    return service_model().operation_model(name)


# Unicode classes Python's `re` lacks (used by the tag patterns), by their nearest escapes;
# \w also admits "_" and \s tabs and newlines, both harmless in a tag.
_UNICODE_CLASSES = {r"\p{L}": r"\w", r"\p{N}": r"\d", r"\p{Z}": r"\s"}


@cache
def _pattern(pattern: str) -> re.Pattern[str]:
    # The model's patterns are full-value patterns on AWS's side ("my coll" is refused).
    for unicode_class, escape in _UNICODE_CLASSES.items():
        pattern = pattern.replace(unicode_class, escape)
    return re.compile(pattern)


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class _Checker:
    def __init__(self) -> None:
        self.errors: list[str] = []
        self.too_large: str | None = None

    def fail(self, path: str, value: Any, constraint: str) -> None:
        self.errors.append(
            f"Value '{_shown(value)}' at '{path}' failed to satisfy constraint: {constraint}"
        )

    def check(self, shape: Shape, value: Any, path: str) -> Any:
        kind = shape.type_name
        method = getattr(self, f"_check_{kind}", None)
        if method is None:  # a type our operations never take
            return value
        return method(shape, value, path)

    def _check_structure(self, shape: Shape, value: Any, path: str) -> Any:
        if not isinstance(value, dict):
            self.fail(path or "body", value, "Member must be a JSON object")
            return None
        prefix = f"{path}." if path else ""
        result: dict[str, Any] = {}
        for name, member_value in value.items():
            member = shape.members.get(name)
            if member is None:
                self.errors.append(f"Unknown parameter '{prefix}{name}'")
            elif member_value is not None:
                result[name] = self.check(member, member_value, prefix + name)
        for name in shape.required_members:
            if value.get(name) is None:
                self.errors.append(
                    f"Value null at '{prefix}{name}' failed to satisfy constraint: "
                    "Member must not be null"
                )
        return result

    def _check_list(self, shape: Shape, value: Any, path: str) -> Any:
        if not isinstance(value, list):
            self.fail(path, value, "Member must be a list")
            return None
        self._length(shape, value, len(value), path)
        return [self.check(shape.member, item, f"{path}[{i}]") for i, item in enumerate(value)]

    def _check_map(self, shape: Shape, value: Any, path: str) -> Any:
        if not isinstance(value, dict):
            self.fail(path, value, "Member must be a JSON object")
            return None
        self._length(shape, value, len(value), path)
        return {
            self.check(shape.key, k, f"{path}.key"): self.check(shape.value, v, f"{path}.{k}")
            for k, v in value.items()
        }

    def _check_string(self, shape: Shape, value: Any, path: str) -> Any:
        if not isinstance(value, str):
            self.fail(path, value, "Member must be a string")
            return None
        meta = shape.metadata
        self._length(shape, value, len(value), path)
        if "enum" in meta and value not in meta["enum"]:
            self.fail(
                path, value, f"Member must satisfy enum value set: [{', '.join(meta['enum'])}]"
            )
        if "pattern" in meta and not _pattern(meta["pattern"]).fullmatch(value):
            self.fail(
                path, value, f"Member must satisfy regular expression pattern: {meta['pattern']}"
            )
        return value

    def _check_integer(self, shape: Shape, value: Any, path: str) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(path, value, "Member must be an integer")
            return None
        self._range(shape, value, path)
        return value

    _check_long = _check_integer

    def _check_float(self, shape: Shape, value: Any, path: str) -> Any:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            self.fail(path, value, "Member must be a number")
            return None
        self._range(shape, value, path)
        return float(value)

    _check_double = _check_float

    def _check_boolean(self, shape: Shape, value: Any, path: str) -> Any:
        if not isinstance(value, bool):
            self.fail(path, value, "Member must be a boolean")
            return None
        return value

    def _check_blob(self, shape: Shape, value: Any, path: str) -> Any:
        if not isinstance(value, str):
            self.fail(path, "<non-string>", "Member must be base64-encoded bytes")
            return None
        limit = shape.metadata.get("max")
        # Refuse an oversized blob from its encoded length, before decoding it.
        if limit is not None and len(value) > (limit + 2) // 3 * 4 + 4:
            return self._blob_too_large(shape, path, len(value) * 3 // 4, limit)
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            self.fail(path, "<bytes>", "Member must be base64-encoded bytes")
            return None
        if limit is not None and len(data) > limit:
            return self._blob_too_large(shape, path, len(data), limit)
        if len(data) < shape.metadata.get("min", 0):
            self.fail(
                path,
                "<bytes>",
                f"Member must have length greater than or equal to {shape.metadata['min']}",
            )
        return data

    def _blob_too_large(self, shape: Shape, path: str, size: int, limit: int) -> None:
        if shape.name == _IMAGE_BLOB:
            self.too_large = (
                f"{path} is {size:,} bytes; images sent as Bytes may be at most {limit:,} bytes "
                "(use S3Object for larger ones)"
            )
        else:
            self.fail(path, "<bytes>", f"Member must have length less than or equal to {limit}")

    def _length(self, shape: Shape, value: Any, length: int, path: str) -> None:
        meta = shape.metadata
        if "min" in meta and length < meta["min"]:
            self.fail(
                path, value, f"Member must have length greater than or equal to {meta['min']}"
            )
        if "max" in meta and length > meta["max"]:
            self.fail(path, value, f"Member must have length less than or equal to {meta['max']}")

    def _range(self, shape: Shape, value: float, path: str) -> None:
        meta = shape.metadata
        if "min" in meta and value < meta["min"]:
            self.fail(path, value, f"Member must have value greater than or equal to {meta['min']}")
        if "max" in meta and value > meta["max"]:
            self.fail(path, value, f"Member must have value less than or equal to {meta['max']}")


def validate_input(operation: OperationModel, params: Any) -> dict[str, Any]:
    """`params` checked against the operation's input shape: the cleaned values (nulls
    dropped, blobs decoded), or a RekognitionError listing every violation."""
    checker = _Checker()
    cleaned = checker.check(operation.input_shape, params, "")
    if checker.too_large:
        raise RekognitionError("ImageTooLargeException", checker.too_large)
    if checker.errors:
        count = len(checker.errors)
        plural = "error" if count == 1 else "errors"
        raise invalid_parameter(
            f"{count} validation {plural} detected: " + "; ".join(checker.errors)
        )
    return cleaned
