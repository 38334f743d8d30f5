"""JSON Schemas (2020-12, as OpenAPI 3.1 uses them) of the REST API's wire shapes.

The `components/schemas` of the OpenAPI document; tests validate real responses against them.
"""

from __future__ import annotations

from typing import Any

from serve_app.service.quality_filter import Reason
from serve_app.store.records import FaceRefusal

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def object_schema(properties: dict[str, Schema], required: list[str] | None = None) -> Schema:
    schema: Schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema


_NUMBER = {"type": "number"}
_TIMESTAMP = {"type": "string", "format": "date-time"}

SCHEMAS: dict[str, Schema] = {
    "Error": object_schema(
        {
            "error": object_schema(
                {
                    "code": {
                        "type": "string",
                        "description": "Stable machine-readable code.",
                        "examples": ["invalid_image", "not_found", "already_exists"],
                    },
                    "message": {"type": "string", "description": "What went wrong, for people."},
                },
                ["code", "message"],
            )
        },
        ["error"],
    ),
    "ImageSize": object_schema(
        {"width": {"type": "integer"}, "height": {"type": "integer"}}, ["width", "height"]
    ),
    "BoundingBox": {
        **object_schema(
            {"left": _NUMBER, "top": _NUMBER, "width": _NUMBER, "height": _NUMBER},
            ["left", "top", "width", "height"],
        ),
        "description": "Pixels of the original image; may extend past its edges.",
    },
    "Landmarks": {
        "type": "array",
        "description": "Five [x, y] points in pixels, in the order named by the model pack.",
        "items": {"type": "array", "items": _NUMBER, "minItems": 2, "maxItems": 2},
        "minItems": 5,
        "maxItems": 5,
    },
    "Quality": object_schema(
        {
            "sharpness": {**_NUMBER, "description": "0-100"},
            "brightness": {**_NUMBER, "description": "0-100"},
            "face_size": {**_NUMBER, "description": "Shorter side of the box, pixels."},
            "pose": object_schema({"yaw": _NUMBER, "pitch": _NUMBER, "roll": _NUMBER}),
        }
    ),
    "DetectedFace": object_schema(
        {
            "bounding_box": ref("BoundingBox"),
            "landmarks": ref("Landmarks"),
            "confidence": {**_NUMBER, "description": "Detector confidence, 0-100."},
            "quality": ref("Quality"),
        },
        ["bounding_box", "landmarks", "confidence", "quality"],
    ),
    "Face": object_schema(
        {
            "face_id": {"type": "string"},
            "image_id": {"type": ["string", "null"]},
            "external_image_id": {"type": ["string", "null"]},
            "bounding_box": ref("BoundingBox"),
            "landmarks": ref("Landmarks"),
            "confidence": _NUMBER,
            "quality": ref("Quality"),
            "metadata": {"type": "object"},
            "person_id": {"type": ["string", "null"]},
            "created_at": _TIMESTAMP,
        },
        ["face_id", "bounding_box", "confidence", "external_image_id", "created_at"],
    ),
    "UnindexedFace": object_schema(
        {
            "face": ref("DetectedFace"),
            "reasons": {"type": "array", "items": {"enum": [r.value for r in Reason]}},
        },
        ["face", "reasons"],
    ),
    "Match": object_schema(
        {
            "similarity": {**_NUMBER, "description": "Calibrated similarity, 0-100."},
            "face": ref("Face"),
        },
        ["similarity", "face"],
    ),
    "CompareMatch": object_schema(
        {"similarity": _NUMBER, "face": ref("DetectedFace")}, ["similarity", "face"]
    ),
    "Collection": object_schema(
        {
            "name": {"type": "string"},
            "model_version": {"type": "string", "examples": ["dlib-r29"]},
            "embedding_dim": {"type": "integer"},
            "vector_backend": {"type": "string", "examples": ["pgvector"]},
            "metadata": {"type": "object"},
            "created_at": _TIMESTAMP,
            "face_count": {"type": "integer"},
            "person_count": {"type": "integer"},
        },
        ["name", "model_version", "embedding_dim", "vector_backend", "created_at", "face_count"],
    ),
    "SearchResult": object_schema(
        {
            "model_version": {"type": "string"},
            "searched_face": {"anyOf": [ref("Face"), ref("DetectedFace")]},
            "matches": {
                "type": "array",
                "items": ref("Match"),
                "description": "Best match first.",
            },
        },
        ["searched_face", "matches"],
    ),
    "Person": object_schema(
        {
            "person_id": {"type": "string", "description": "Your id for the person."},
            "metadata": {"type": "object"},
            "face_count": {"type": "integer", "description": "Faces associated, at most 100."},
            "created_at": _TIMESTAMP,
        },
        ["person_id", "metadata", "face_count", "created_at"],
    ),
    "UnsuccessfulFace": object_schema(
        {
            "face_id": {"type": "string"},
            "reasons": {"type": "array", "items": {"enum": [r.value for r in FaceRefusal]}},
            "similarity": {
                "type": ["number", "null"],
                "description": "LOW_MATCH_CONFIDENCE: the best similarity to the person's faces.",
            },
            "person_id": {
                "type": ["string", "null"],
                "description": "ASSOCIATED_TO_A_DIFFERENT_USER: the person the face belongs to.",
            },
        },
        ["face_id", "reasons", "similarity", "person_id"],
    ),
    "Association": object_schema(
        {
            "associated": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Face ids done (including those that already were).",
            },
            "unsuccessful": {"type": "array", "items": ref("UnsuccessfulFace")},
            "person": ref("Person"),
        },
        ["associated", "unsuccessful", "person"],
    ),
    "PersonMatch": object_schema(
        {
            "similarity": {**_NUMBER, "description": "Best similarity of the person's faces."},
            "person": ref("Person"),
        },
        ["similarity", "person"],
    ),
    "PersonSearchResult": object_schema(
        {
            "model_version": {"type": "string"},
            "searched_face": {"anyOf": [ref("Face"), ref("DetectedFace")]},
            "matches": {
                "type": "array",
                "items": ref("PersonMatch"),
                "description": "Best match first.",
            },
            "unsearched": {
                "type": "array",
                "items": ref("DetectedFace"),
                "description": "The image's other faces (only the largest is searched).",
            },
        },
        ["searched_face", "matches", "unsearched"],
    ),
    "Readiness": object_schema(
        {
            "status": {"enum": ["ready", "not_ready"]},
            "checks": {"type": "object", "additionalProperties": {"type": "boolean"}},
        },
        ["status", "checks"],
    ),
}
