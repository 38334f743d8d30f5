"""Our service errors as Rekognition's wire errors: the code botocore maps to an exception
class, AWS JSON 1.1's body and headers, and no internals leaking out."""

from __future__ import annotations

import json

import pytest

from serve_app.api.body import RequestTooLarge
from serve_app.api.rekognition.errors import (
    from_service_error,
    internal_error,
    is_capacity_error,
)
from serve_app.errors import (
    AlreadyExists,
    FaceserveError,
    IdempotentParameterMismatch,
    ImageTooLarge,
    InvalidImage,
    InvalidParameter,
    ModelNotAvailable,
    NotFound,
    UnsupportedFormat,
)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidParameter("x"), "InvalidParameterException"),
        (IdempotentParameterMismatch("x"), "IdempotentParameterMismatchException"),
        (InvalidImage("x"), "InvalidImageFormatException"),
        (UnsupportedFormat("x"), "InvalidImageFormatException"),
        (ImageTooLarge("x"), "ImageTooLargeException"),
        (RequestTooLarge("x"), "ImageTooLargeException"),
        (NotFound("x"), "ResourceNotFoundException"),
        (AlreadyExists("x"), "ResourceAlreadyExistsException"),
        (ModelNotAvailable("x"), "InvalidParameterException"),
    ],
)
def test_service_errors_map_to_rekognition_codes(error: FaceserveError, code: str) -> None:
    mapped = from_service_error(error)
    assert (mapped.code, mapped.status, mapped.message) == (code, 400, "x")


def test_an_operation_can_give_an_error_its_own_meaning() -> None:
    mapped = from_service_error(
        AlreadyExists("user u exists"), {"already_exists": "ConflictException"}
    )
    assert mapped.code == "ConflictException"


def test_unknown_errors_keep_their_class_of_status() -> None:
    class Overloaded(FaceserveError):
        code = "something_new"
        http_status = 429

    class Broken(FaceserveError):
        code = "something_else"
        http_status = 503

    assert from_service_error(Overloaded("busy")).code == "ProvisionedThroughputExceededException"
    broken = from_service_error(Broken("db down"))
    # 503 stays 503: AWS SDKs retry it (a store down for a moment), as they retry a 500.
    assert (broken.code, broken.status) == ("InternalServerError", 503)

    class Bug(FaceserveError):
        code = "something_broken"
        http_status = 500

    assert from_service_error(Bug("oops")).status == 500


def test_serving_capacity_errors_are_throughput_exceeded() -> None:
    # Ray Serve's back-pressure error, recognised by name (the API does not import Ray).
    class BackPressureError(Exception):
        pass

    assert is_capacity_error(BackPressureError())
    assert not is_capacity_error(RuntimeError("boom"))


def test_the_wire_shape_of_an_error() -> None:
    response = from_service_error(NotFound("collection 'x' not found")).response("req-1")
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/x-amz-json-1.1"
    assert response.headers["x-amzn-ErrorType"].split(":")[0] == "ResourceNotFoundException"
    assert response.headers["x-amzn-RequestId"] == "req-1"
    assert json.loads(response.body) == {
        "__type": "ResourceNotFoundException",
        "message": "collection 'x' not found",
    }
    assert json.loads(internal_error().response("r").body)["message"].startswith("internal error")
