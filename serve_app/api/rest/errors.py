"""Errors at the REST edge: every failure becomes `{"error": {"code", "message"}}`.

The service's exceptions keep their own status and code; request validation (pydantic, path
and query parameters) is a 400 `invalid_parameter` naming the field; routing errors keep
their status; anything unexpected is a 500 whose details go to the log only.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response

from serve_app.api.rest.models import ErrorBody
from serve_app.errors import FaceserveError, InvalidParameter, RateLimited, Unauthenticated

logger = logging.getLogger(__name__)

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 400: "invalid_request"}

# What each error status means on this API: the OpenAPI document's error responses.
ERROR_MEANINGS = {
    400: "Malformed request: bad JSON (`invalid_json`), a missing or undecodable image "
    "(`invalid_image`), a parameter of the wrong type or out of range (`invalid_parameter`), "
    "a request token reused for another request (`idempotent_parameter_mismatch`).",
    401: "No API key, or one unknown, revoked or expired (`unauthenticated`): send "
    "`Authorization: Bearer <secret>` or `X-API-Key: <secret>`.",
    403: "The key's role may not do this (`forbidden`).",
    404: "No such collection, face, person or route (`not_found`); a key scoped to other "
    "collections sees this one as absent.",
    409: "Already exists (`already_exists`).",
    413: "Request body or image too large (`request_too_large`, `image_too_large`).",
    415: "Content type or image format not accepted (`unsupported_media_type`, "
    "`unsupported_format`).",
    422: "The model pack the request needs is not loaded (`model_not_available`).",
    429: "The key's (or, without a key, the client address's) rate limit is spent "
    "(`rate_limited`); retry after the `Retry-After` seconds.",
    500: "Unexpected failure (`internal_error`); details are only in the server log.",
    503: "A store the request needs is down for now: PostgreSQL did not answer "
    "(`database_unavailable`, e.g. while it restarts), or the collection's external vector "
    "store (Pinecone) is unreachable, throttling, out of quota or refusing the service's "
    "credentials (`vector_store_unavailable`). Nothing was wrong with the request; retry "
    "after the `Retry-After` seconds.",
}
# Every route may meet these: a bad parameter, no or the wrong key, a spent rate limit, a bug,
# a database that does not answer.
COMMON = (400, 401, 403, 429, 500, 503)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route that can fail with `statuses` (and the common ones)."""
    return {
        status: {"model": ErrorBody, "description": ERROR_MEANINGS[status]}
        for status in sorted({*statuses, *COMMON})
    }


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status, headers=headers)


def describe_validation(errors: list[Any]) -> str:
    """`field: what is wrong` for each error pydantic found (locations without `body`)."""
    parts = []
    for error in errors[:5]:
        loc = [str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path")]
        field = ".".join(loc) or "request"
        parts.append(f"{field}: {error.get('msg', 'invalid')}")
    return "; ".join(parts)


def invalid(exc: ValidationError) -> InvalidParameter:
    return InvalidParameter(describe_validation(exc.errors(include_url=False)))


async def _service_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, FaceserveError)
    if exc.http_status >= 500:
        logger.error("%s %s failed: %s", request.method, request.url.path, exc.message)
    # A dependency that is down for a moment (database, Pinecone): tell clients when to retry.
    headers = {"Retry-After": "2"} if exc.http_status == 503 else None
    if isinstance(exc, RateLimited):
        headers = {"Retry-After": str(exc.retry_after)}
    elif isinstance(exc, Unauthenticated):
        headers = {"WWW-Authenticate": 'Bearer realm="faceserve"'}
    return error_response(exc.http_status, exc.code, exc.message, headers=headers)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return error_response(400, InvalidParameter.code, describe_validation(list(exc.errors())))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    if exc.status_code == 404:
        message = f"no route {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
    else:
        message = str(exc.detail)
    return error_response(exc.status_code, code, message, headers=exc.headers)


async def _internal_error(request: Request, exc: Exception) -> Response:
    # The traceback goes to the log, never to the client.
    logger.error("%s %s raised", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "internal error; the server log has details")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(FaceserveError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _internal_error)
