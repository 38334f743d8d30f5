"""Request validation from botocore's Rekognition model: every constraint a client can break
is refused with InvalidParameterException naming the parameter."""

from __future__ import annotations

import base64

import pytest

from serve_app.api.rekognition.errors import RekognitionError
from serve_app.api.rekognition.validation import operation_model, validate_input

PNG = base64.b64encode(b"\x89PNG not really").decode()


def refused(operation: str, params: object) -> RekognitionError:
    with pytest.raises(RekognitionError) as caught:
        validate_input(operation_model(operation), params)
    return caught.value


def test_valid_requests_come_back_cleaned() -> None:
    cleaned = validate_input(
        operation_model("SearchFacesByImage"),
        {"CollectionId": "people", "Image": {"Bytes": PNG}, "MaxFaces": 3, "QualityFilter": None},
    )
    assert cleaned == {
        "CollectionId": "people",
        "Image": {"Bytes": b"\x89PNG not really"},
        "MaxFaces": 3,
    }
    assert validate_input(operation_model("ListCollections"), {}) == {}
    # An integer where the model says float is a number all the same.
    cleaned = validate_input(
        operation_model("SearchFaces"),
        {
            "CollectionId": "c",
            "FaceId": "0b4dbc8e-7a67-4a8e-9b8f-2a8e1c1d5f00",
            "FaceMatchThreshold": 90,
        },
    )
    assert cleaned["FaceMatchThreshold"] == 90.0


@pytest.mark.parametrize(
    ("operation", "params", "named", "constraint"),
    [
        ("CreateCollection", {}, "CollectionId", "must not be null"),
        ("CreateCollection", {"CollectionId": "has space"}, "CollectionId", "pattern"),
        ("CreateCollection", {"CollectionId": "x" * 256}, "CollectionId", "less than or equal"),
        ("CreateCollection", {"CollectionId": ""}, "CollectionId", "greater than or equal"),
        ("CreateCollection", {"CollectionId": 7}, "CollectionId", "must be a string"),
        ("CreateCollection", {"CollectionId": "c", "Colour": "red"}, "Colour", "Unknown"),
        ("SearchFaces", {"CollectionId": "c", "FaceId": "nope"}, "FaceId", "pattern"),
        (
            "SearchFacesByImage",
            {"CollectionId": "c", "Image": {"Bytes": PNG}, "MaxFaces": 4097},
            "MaxFaces",
            "less than or equal to 4096",
        ),
        (
            "SearchFacesByImage",
            {"CollectionId": "c", "Image": {"Bytes": PNG}, "MaxFaces": 0},
            "MaxFaces",
            "greater than or equal to 1",
        ),
        (
            "SearchFacesByImage",
            {"CollectionId": "c", "Image": {"Bytes": PNG}, "FaceMatchThreshold": 100.5},
            "FaceMatchThreshold",
            "less than or equal to 100",
        ),
        (
            "SearchFacesByImage",
            {"CollectionId": "c", "Image": {"Bytes": PNG}, "MaxFaces": True},
            "MaxFaces",
            "integer",
        ),
        (
            "IndexFaces",
            {"CollectionId": "c", "Image": {"Bytes": PNG}, "QualityFilter": "BEST"},
            "QualityFilter",
            "enum",
        ),
        (
            "IndexFaces",
            {"CollectionId": "c", "Image": {"Bytes": PNG}, "ExternalImageId": "a b"},
            "ExternalImageId",
            "pattern",
        ),
        ("IndexFaces", {"CollectionId": "c", "Image": {"Bytes": "%%%"}}, "Image.Bytes", "base64"),
        (
            "IndexFaces",
            {"CollectionId": "c", "Image": {"S3Object": {"Bucket": "ab", "Name": "k"}}},
            "Image.S3Object.Bucket",
            "greater than or equal to 3",
        ),
        ("DeleteFaces", {"CollectionId": "c", "FaceIds": []}, "FaceIds", "greater than or equal"),
        ("DeleteFaces", {"CollectionId": "c", "FaceIds": ["x"]}, "FaceIds[0]", "pattern"),
        (
            "AssociateFaces",
            {
                "CollectionId": "c",
                "UserId": "u",
                "FaceIds": ["0b4dbc8e-7a67-4a8e-9b8f-2a8e1c1d5f00"] * 101,
            },
            "FaceIds",
            "less than or equal to 100",
        ),
        (
            "CreateUser",
            {"CollectionId": "c", "UserId": "u", "ClientRequestToken": "no spaces allowed"},
            "ClientRequestToken",
            "pattern",
        ),
        ("ListUsers", {"CollectionId": "c", "MaxResults": 501}, "MaxResults", "less than"),
        ("ListCollections", [], "body", "JSON object"),
    ],
)
def test_constraint_violations_name_the_parameter(
    operation: str, params: object, named: str, constraint: str
) -> None:
    error = refused(operation, params)
    assert error.code == "InvalidParameterException"
    assert f"'{named}'" in error.message and constraint in error.message, error.message


def test_every_violation_is_listed() -> None:
    error = refused("CreateUser", {"CollectionId": "a b", "UserId": "c d"})
    assert error.message.startswith("2 validation errors detected")
    assert "'CollectionId'" in error.message and "'UserId'" in error.message


def test_an_image_over_5_mb_is_image_too_large() -> None:
    big = base64.b64encode(b"\0" * (5 * 1024 * 1024 + 1)).decode()
    error = refused("DetectFaces", {"Image": {"Bytes": big}})
    assert error.code == "ImageTooLargeException"
    assert "S3Object" in error.message
    # Exactly 5 MB is allowed.
    exact = base64.b64encode(b"\0" * (5 * 1024 * 1024)).decode()
    assert validate_input(operation_model("DetectFaces"), {"Image": {"Bytes": exact}})


def test_every_pattern_in_the_model_compiles() -> None:
    # Tag patterns use \p{L}-style classes, which Python's re does not know as such.
    from serve_app.api.rekognition.validation import _pattern, service_model

    model = service_model()
    patterns = {
        model.shape_for(name).metadata["pattern"]
        for name in model.shape_names
        if "pattern" in model.shape_for(name).metadata
    }
    assert len(patterns) > 10
    for pattern in patterns:
        _pattern(pattern)
    tags = {"CollectionId": "c", "Tags": {"team é": "faces 1"}}
    assert validate_input(operation_model("CreateCollection"), tags) == tags
    error = refused("CreateCollection", {"CollectionId": "c", "Tags": {"aws:x": "y"}})
    assert "Tags.key" in error.message
