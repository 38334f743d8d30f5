"""Request bodies: read with a size cap (shared by REST and the Rekognition API), then
parsed into fields.

A REST body is JSON, multipart/form-data or url-encoded. Images come as multipart file parts
or as base64 text (a JSON string, or a plain form field). Every way a body can be wrong ends
in a `FaceserveError` with a 4xx status, never in anything else.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import AsyncIterator
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


async def read_fields(request: Request, limit: int, files: int) -> tuple[dict[str, Any], bool]:
    """The body's fields, read within `limit` bytes, and whether they are JSON-typed (True
    for JSON, whose values keep their JSON types; False for a form, whose values are text,
    or bytes for file parts). An empty body has no fields."""
    body = await read_body(request, limit)
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not body:
        return {}, True
    if media_type == "application/json" or media_type.endswith("+json"):
        return _json_object(body), True
    if media_type in FORM_TYPES:
        return await _form_fields(request, media_type, body, limit, files), False
    shown = media_type or "none"
    raise UnsupportedMediaType(
        f"content type {shown!r} is not accepted; send application/json, "
        "multipart/form-data or application/x-www-form-urlencoded"
    )


def image_field(fields: dict[str, Any], name: str) -> bytes:
    """The image in field `name`: a file part's bytes, or base64 text (a data: URL too)."""
    value = fields.get(name)
    if value is None or value == "":
        raise InvalidParameter(f"the image field {name!r} is missing")
    if isinstance(value, bytes):
        return value
    if not isinstance(value, str):
        raise InvalidParameter(f"{name} must be an uploaded file or a base64 string")
    return _base64(name, value)


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


async def _capped(request: Request, limit: int) -> AsyncIterator[bytes]:
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(f"request body passes the limit of {limit:,} bytes")
        yield chunk


async def read_upload(request: Request, limit: int, file_field: str) -> tuple[dict[str, str], Any]:
    """A multipart body carrying one large file (an archive): its text fields, and the file
    part as Starlette's `UploadFile`, spooled to disk while the body streams (never held in
    memory), the whole body refused past `limit` bytes. The caller closes the file."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"request body is {int(declared):,} bytes; the limit is {limit:,}")
    try:
        form = await MultiPartParser(
            request.headers,
            _capped(request, limit),
            max_files=1,
            max_fields=MAX_FORM_FIELDS,
            max_part_size=BODY_SLACK,
        ).parse()
    except MultiPartException as exc:
        raise InvalidParameter(f"malformed form body: {exc.message}") from None
    except (KeyError, ValueError):
        raise InvalidParameter("malformed form body") from None
    upload = None
    fields: dict[str, str] = {}
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            if key != file_field:
                await form.close()
                raise InvalidParameter(
                    f"the only file part accepted is {file_field!r}, not {key!r}"
                )
            upload = value
        else:
            fields[key] = value
    if upload is None:
        raise InvalidParameter(f"the file part {file_field!r} is missing")
    return fields, upload
