"""Request bodies of the REST API: read with a size cap, then typed fields out of them.

A body is JSON, multipart/form-data or url-encoded. Images come as multipart file parts or
as base64 text (a JSON string, or a plain form field). Every way a body can be wrong ends
in a `FaceserveError` with a 4xx status, never in anything else.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import UploadFile
from starlette.formparsers import FormParser, MultiPartException, MultiPartParser
from starlette.requests import Request

from serve_app.errors import FaceserveError, InvalidParameter

# Room for the other fields and the multipart framing around the image(s).
BODY_SLACK = 64 * 1024
MAX_FORM_FIELDS = 32
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
# Half of a UTF-16 surrogate pair: what a lone \uD800-style escape in JSON text decodes to.
_SURROGATE = re.compile("[\ud800-\udfff]")


class InvalidJson(InvalidParameter):
    code = "invalid_json"


class UnsupportedMediaType(FaceserveError):
    code = "unsupported_media_type"
    http_status = 415


class RequestTooLarge(FaceserveError):
    code = "request_too_large"
    http_status = 413


def body_limit(max_image_bytes: int, images: int) -> int:
    """Largest body accepted for a request carrying `images` images (base64 is 4/3 larger)."""
    return images * (max_image_bytes * 4 // 3 + 4) + BODY_SLACK


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused as soon as it is known to pass `limit` bytes.

    A declared Content-Length over the limit is refused before a byte is read; a body sent
    without one (chunked) is counted while it streams.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"request body is {int(declared):,} bytes; the limit is {limit:,}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(f"request body passes the limit of {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


@dataclass(frozen=True)
class Payload:
    """The fields of one request body. `typed` is True for JSON, whose values keep their
    JSON types; form values are strings (or bytes, for file parts) to be parsed."""

    fields: Mapping[str, Any]
    typed: bool

    @classmethod
    async def read(cls, request: Request, max_image_bytes: int, images: int = 0) -> Payload:
        """Read and parse the body of `request`, which may carry up to `images` images of up
        to `max_image_bytes` each; an empty body is an empty payload."""
        limit = body_limit(max_image_bytes, images)
        body = await read_body(request, limit)
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if not body:
            return cls({}, typed=True)
        if media_type == "application/json" or media_type.endswith("+json"):
            return cls(_json_object(body), typed=True)
        if media_type in FORM_TYPES:
            fields = await _form_fields(request, media_type, body, limit, images)
            return cls(fields, typed=False)
        shown = media_type or "none"
        raise UnsupportedMediaType(
            f"content type {shown!r} is not accepted; send application/json, "
            "multipart/form-data or application/x-www-form-urlencoded"
        )

    def image(self, name: str) -> bytes:
        """The image in field `name`: a file part's bytes, or base64 text."""
        value = self.fields.get(name)
        if value is None or value == "":
            raise InvalidParameter(f"the image field {name!r} is missing")
        if isinstance(value, bytes):
            return value
        if not isinstance(value, str):
            raise InvalidParameter(f"{name} must be an uploaded file or a base64 string")
        return _base64(name, value)

    def text(self, name: str) -> str | None:
        value = self.fields.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise InvalidParameter(f"{name} must be a string")
        return value

    def integer(self, name: str) -> int | None:
        value = self.fields.get(name)
        if value is None:
            return None
        return parse_integer(name, value, typed=self.typed)

    def number(self, name: str) -> float | None:
        value = self.fields.get(name)
        if value is None:
            return None
        if self.typed:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidParameter(f"{name} must be a number")
            return float(value)
        if not isinstance(value, str):
            raise InvalidParameter(f"{name} must be a number")
        try:
            number = float(value.strip())
        except ValueError:
            raise InvalidParameter(f"{name} must be a number, got {value[:40]!r}") from None
        if not math.isfinite(number):
            raise InvalidParameter(f"{name} must be a finite number, got {value[:40]!r}")
        return number

    def text_list(self, name: str) -> list[str] | None:
        """A list of strings: a JSON array; in a form, JSON text or comma-separated values."""
        value = self.fields.get(name)
        if value is None:
            return None
        if not self.typed and isinstance(value, str):
            text = value.strip()
            value = parse_json(text, name) if text.startswith("[") else text.split(",")
            if isinstance(value, list) and all(isinstance(item, str) for item in value):
                value = [item.strip() for item in value]
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise InvalidParameter(f"{name} must be a list of strings")
        return value

    def json_object(self, name: str) -> dict | None:
        """A JSON object field; in a form it is a JSON string."""
        value = self.fields.get(name)
        if value is None:
            return None
        if not self.typed and isinstance(value, str):
            value = parse_json(value, name)
        if not isinstance(value, dict):
            raise InvalidParameter(f"{name} must be a JSON object")
        return value


def parse_integer(name: str, value: Any, typed: bool = False) -> int:
    """An integer from a JSON value (`typed`) or from text (a form field, a query string)."""
    if typed:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidParameter(f"{name} must be an integer")
        return value
    text = value.strip() if isinstance(value, str) else ""
    digits = text[1:] if text[:1] in "+-" else text
    # Bounded length: int() of a 100k-digit string costs real CPU time.
    if not digits.isdigit() or not digits.isascii() or len(digits) > 18:
        raise InvalidParameter(f"{name} must be an integer, got {str(value)[:40]!r}")
    return int(text)


def parse_boolean(name: str, value: str) -> bool:
    """A boolean from text (a query string): true/false, 1/0, yes/no."""
    text = value.strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise InvalidParameter(f"{name} must be true or false, got {value[:40]!r}")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _has_lone_surrogate(value: Any) -> bool:
    """Whether any string in a parsed JSON value holds half a UTF-16 pair (not Unicode)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def parse_json(text: str | bytes, what: str = "request body") -> Any:
    """Strict JSON: no NaN or Infinity, no unpaired surrogate escapes (neither can be stored
    or passed on as JSON); anything else wrong is `InvalidJson`."""
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise InvalidJson(f"{what} is not valid JSON") from None
    if _has_lone_surrogate(value):
        raise InvalidJson(f"{what} holds a \\u escape that is not valid Unicode")
    return value


def _json_object(body: bytes) -> dict:
    value = parse_json(body)
    if not isinstance(value, dict):
        raise InvalidJson("request body must be a JSON object")
    return value


def _base64(name: str, text: str) -> bytes:
    # Accept a data URL ("data:image/jpeg;base64,...") as browsers produce it.
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidParameter(f"{name} is not valid base64") from None


async def _replay(body: bytes) -> AsyncIterator[bytes]:
    yield body


async def _form_fields(
    request: Request, media_type: str, body: bytes, part_limit: int, images: int
) -> dict[str, str | bytes]:
    """Parse a form body already read; file parts become bytes."""
    try:
        if media_type == "multipart/form-data":
            parser: MultiPartParser | FormParser = MultiPartParser(
                request.headers,
                _replay(body),
                max_files=images + 2,
                max_fields=MAX_FORM_FIELDS,
                max_part_size=part_limit,
            )
        else:
            parser = FormParser(
                request.headers, _replay(body), max_fields=MAX_FORM_FIELDS, max_part_size=part_limit
            )
        form = await parser.parse()
    except MultiPartException as exc:
        raise InvalidParameter(f"malformed form body: {exc.message}") from None
    except (KeyError, ValueError):  # e.g. a multipart Content-Type without a boundary
        raise InvalidParameter("malformed form body") from None
    fields: dict[str, str | bytes] = {}
    try:
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                fields[key] = await value.read()
            else:
                fields[key] = value
    finally:
        await form.close()
    return fields
