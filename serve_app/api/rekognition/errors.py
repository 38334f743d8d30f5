"""Errors as Amazon Rekognition returns them, and our service errors mapped onto them.

AWS JSON 1.1 errors carry the code in the body's `__type` (and the `x-amzn-ErrorType`
header); botocore turns that code into the exception class a Rekognition user catches,
e.g. `client.exceptions.ResourceNotFoundException`.
"""

from __future__ import annotations

from starlette.responses import JSONResponse

from serve_app.errors import FaceserveError

CONTENT_TYPE = "application/x-amz-json-1.1"


class RekognitionError(Exception):
    """An error to answer with as Rekognition would: code, message, HTTP status."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status

    def response(self, request_id: str) -> JSONResponse:
        headers = {"x-amzn-ErrorType": f"{self.code}:", "x-amzn-RequestId": request_id}
        body = {"__type": self.code, "message": self.message}
        return JSONResponse(body, self.status, headers=headers, media_type=CONTENT_TYPE)


def invalid_parameter(message: str) -> RekognitionError:
    return RekognitionError("InvalidParameterException", message)


# Our error codes (FaceserveError.code, most specific class first) -> Rekognition's.
_BY_CODE = {
    "invalid_parameter": "InvalidParameterException",
    "invalid_json": "SerializationException",
    "idempotent_parameter_mismatch": "IdempotentParameterMismatchException",
    "unsupported_format": "InvalidImageFormatException",
    "invalid_image": "InvalidImageFormatException",
    "image_too_large": "ImageTooLargeException",
    # The only large thing a Rekognition request carries is its image(s).
    "request_too_large": "ImageTooLargeException",
    "not_found": "ResourceNotFoundException",
    "already_exists": "ResourceAlreadyExistsException",
    # For a service error with this code, should one come (e.g. 100 faces a person).
    "quota_exceeded": "ServiceQuotaExceededException",
    # A collection pinned to a model pack this service does not run: nothing AWS has.
    "model_not_available": "InvalidParameterException",
    # The key's role may not run the operation; its bucket is spent (SDKs back off, retry).
    "forbidden": "AccessDeniedException",
    "rate_limited": "ThrottlingException",
    "unauthenticated": "UnrecognizedClientException",
}
# Capacity errors from the serving layer, matched by name so the API does not import Ray.
_CAPACITY_ERRORS = {"BackPressureError", "DeploymentUnavailableError"}


def from_service_error(
    exc: FaceserveError, overrides: dict[str, str] | None = None
) -> RekognitionError:
    """The Rekognition error for one of ours; `overrides` maps our codes per operation
    (e.g. an existing user is a ConflictException, an existing collection is not)."""
    overrides = overrides or {}
    for cls in type(exc).__mro__:
        code = getattr(cls, "code", None)
        if code in overrides:
            return RekognitionError(overrides[code], exc.message)
        if code in _BY_CODE:
            return RekognitionError(_BY_CODE[code], exc.message)
    if exc.http_status == 429:
        return RekognitionError("ProvisionedThroughputExceededException", exc.message)
    if exc.http_status < 500:
        return RekognitionError("InvalidParameterException", exc.message)
    # 500, or 503 for a dependency that is down for a moment: AWS SDKs retry both.
    return RekognitionError("InternalServerError", exc.message, status=exc.http_status)


def is_capacity_error(exc: BaseException) -> bool:
    return any(cls.__name__ in _CAPACITY_ERRORS for cls in type(exc).__mro__)


def throughput_exceeded() -> RekognitionError:
    return RekognitionError(
        "ProvisionedThroughputExceededException",
        "the service is at capacity; retry with backoff",
    )


def internal_error() -> RekognitionError:
    return RekognitionError(
        "InternalServerError", "internal error; the server log has details", status=500
    )
