"""One exception hierarchy for everything a client can get wrong (or we cannot do).

Each API maps these to its own wire format at the edge; `http_status` is the REST mapping.
"""

from __future__ import annotations


class FaceserveError(Exception):
    """Base class: a message safe to show to the client, and a stable machine code."""

    code = "internal_error"
    http_status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidParameter(FaceserveError):
    code = "invalid_parameter"
    http_status = 400


class IdempotentParameterMismatch(InvalidParameter):
    """A client request token reused with different parameters (or for another operation)."""

    code = "idempotent_parameter_mismatch"


class InvalidImage(FaceserveError):
    """Bytes that are not a decodable image, truncated data, or an image too small to use."""

    code = "invalid_image"
    http_status = 400


class UnsupportedFormat(InvalidImage):
    """A real image in a format we do not accept (e.g. GIF, PSD)."""

    code = "unsupported_format"
    http_status = 415


class ImageTooLarge(FaceserveError):
    """Too many bytes or too many pixels."""

    code = "image_too_large"
    http_status = 413


class NotFound(FaceserveError):
    code = "not_found"
    http_status = 404


class AlreadyExists(FaceserveError):
    code = "already_exists"
    http_status = 409


class ModelNotAvailable(FaceserveError):
    """A model pack whose files are not in the model directory (or cannot be fetched)."""

    code = "model_not_available"
    http_status = 422


class VectorStoreUnavailable(FaceserveError):
    """The external vector store (Pinecone) failed us: unreachable, throttling, out of quota,
    or refusing our credentials. Nothing the client sent was wrong; retrying later may work."""

    code = "vector_store_unavailable"
    http_status = 503


class DatabaseUnavailable(FaceserveError):
    """PostgreSQL did not answer (restarting, failing over, unreachable). Nothing the client
    sent was wrong; retrying in a few seconds may work."""

    code = "database_unavailable"
    http_status = 503


class Unauthenticated(FaceserveError):
    """No API key, or one that is unknown, revoked or expired."""

    code = "unauthenticated"
    http_status = 401


class Forbidden(FaceserveError):
    """A valid key whose role may not do this."""

    code = "forbidden"
    http_status = 403


class RateLimited(FaceserveError):
    """The key (or client address) spent its token bucket; retry after `retry_after` s."""

    code = "rate_limited"
    http_status = 429

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = max(1, int(retry_after))
