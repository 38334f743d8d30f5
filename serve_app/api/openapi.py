"""The OpenAPI 3.1 document of REST API v1, written by hand as plain dicts.

Kept beside the routes in `rest.py`; `tests/test_rest_api.py` checks that every route is
described here and every path described here is routed.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from serve_app.api.schemas import SCHEMAS, Schema, object_schema, ref
from serve_app.service import thresholds
from serve_app.service.quality_filter import QualityFilter

_ERRORS = {
    "400": "Malformed request: bad JSON (`invalid_json`), a missing or undecodable image "
    "(`invalid_image`), a parameter of the wrong type or out of range (`invalid_parameter`), "
    "a request token reused for another request (`idempotent_parameter_mismatch`).",
    "404": "No such collection, face, person or route (`not_found`).",
    "405": "Method not allowed on this path (`method_not_allowed`).",
    "409": "Already exists (`already_exists`).",
    "413": "Request body or image too large (`request_too_large`, `image_too_large`).",
    "415": "Content type or image format not accepted (`unsupported_media_type`, "
    "`unsupported_format`).",
    "422": "The model pack the request needs is not loaded (`model_not_available`).",
    "500": "Unexpected failure (`internal_error`); details are only in the server log.",
    "503": "A store the request needs is down for now: PostgreSQL did not answer "
    "(`database_unavailable`, e.g. while it restarts), or the collection's external vector "
    "store (Pinecone) is unreachable, throttling, out of quota or refusing the service's "
    "credentials (`vector_store_unavailable`). Nothing was wrong with the request; retry "
    "after the `Retry-After` seconds.",
}


def _error(status: str) -> dict[str, Any]:
    return {
        "description": _ERRORS[status],
        "content": {"application/json": {"schema": ref("Error")}},
    }


def _array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def _json(schema: Schema, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_THRESHOLD = {
    "type": "number",
    "minimum": 0,
    "maximum": 100,
    "default": thresholds.SEARCH,
    "description": "Lowest similarity (0-100) to report as a match. Similarity s means a "
    "false-match rate of 10^-((s+20)/20) per comparison: 60 one in 10,000, 80 one in 100,000.",
    "examples": [thresholds.SEARCH],
}
_COMPARE_THRESHOLD = {**_THRESHOLD, "default": thresholds.COMPARE, "examples": [thresholds.COMPARE]}
_MAX_RESULTS = {
    "type": "integer",
    "minimum": 1,
    "maximum": 4096,
    "default": 10,
    "description": "Most matches to return.",
    "examples": [5],
}


_PERSON_MAX_RESULTS = {**_MAX_RESULTS, "maximum": 500, "description": "Most persons to return."}
_ASSOCIATION_THRESHOLD = {
    **_THRESHOLD,
    "default": thresholds.ASSOCIATION,
    "description": "Once the person has faces, a new face must reach this similarity (0-100) "
    "with at least one of them.",
    "examples": [thresholds.ASSOCIATION],
}
_FACE_IDS = {
    "type": "array",
    "items": {"type": "string"},
    "minItems": 1,
    "maxItems": 100,
    "description": "Face ids, as returned when the faces were indexed (at most 100).",
    "examples": [["3fa85f64-5717-4562-b3fc-2c963f66afa6"]],
}
_REQUEST_TOKEN = {
    "type": "string",
    "pattern": "^[a-zA-Z0-9_-]{1,64}$",
    "description": "Optional. A retry with the same token within 24 h gets the first reply "
    "instead of doing the work again.",
}

_FORMATS = "JPEG, PNG, WebP, BMP or TIFF"


def _body(fields: dict[str, Schema], images: list[str], required: list[str]) -> dict[str, Any]:
    """A request body sent as multipart/form-data or as JSON (images as base64)."""
    form_fields = {
        name: {
            "type": "string",
            "format": "binary",
            "description": f"The {name} image: {_FORMATS}.",
        }
        for name in images
    }
    json_fields = {
        name: {
            "type": "string",
            "contentEncoding": "base64",
            "description": f"The {name} image, base64 (a data: URL is accepted too).",
        }
        for name in images
    }
    for name, schema in fields.items():
        json_fields[name] = schema
        form_fields[name] = copy.deepcopy(schema)
        if schema.get("type") == "object":  # a JSON object travels in a form as JSON text
            form_fields[name] = {
                "type": "string",
                "contentMediaType": "application/json",
                "description": schema.get("description", "") + " Sent as JSON text.",
                "examples": [json.dumps(e) for e in schema.get("examples", [])],
            }
    content: dict[str, Any] = {}
    if images:
        content["multipart/form-data"] = {"schema": object_schema(form_fields, required)}
    content["application/json"] = {"schema": object_schema(json_fields, required)}
    return {"required": bool(required), "content": content}


def _operation(
    operation_id: str,
    summary: str,
    responses: dict[str, Any],
    errors: list[str],
    body: dict[str, Any] | None = None,
    parameters: list[Schema] | None = None,
    description: str = "",
) -> dict[str, Any]:
    operation: dict[str, Any] = {"operationId": operation_id, "summary": summary}
    if description:
        operation["description"] = description
    if parameters:
        operation["parameters"] = parameters
    if body:
        operation["requestBody"] = body
    # Whatever reads or writes a collection (those answer 404) may meet a database or
    # Pinecone outage.
    extra = ["500", "503"] if "404" in errors and "503" not in responses else ["500"]
    operation["responses"] = responses | {code: _error(code) for code in errors + extra}
    return operation


_NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "description": "Collection name.",
    "schema": {"type": "string"},
    "example": "staff",
}
_FACE_ID = {
    "name": "face_id",
    "in": "path",
    "required": True,
    "description": "Face id, as returned when the face was indexed.",
    "schema": {"type": "string"},
}
_PERSON_ID = {
    "name": "person_id",
    "in": "path",
    "required": True,
    "description": "Person id, as given when the person was created.",
    "schema": {"type": "string", "pattern": "^[a-zA-Z0-9_.:-]{1,128}$"},
    "example": "employee-1234",
}
_METADATA = {
    "type": "object",
    "description": "Free-form JSON object.",
    "examples": [{"team": "night shift"}],
}
_FACES_OUT = {"type": "array", "items": ref("Face")}
_SEARCH = _json(ref("SearchResult"), "The searched face and its matches, best first.")
_PERSON = _json(ref("Person"), "The person.")
_ASSOCIATION = _json(ref("Association"), "Faces done, faces refused and why, the person.")
_PERSON_SEARCH = _json(ref("PersonSearchResult"), "The persons matched, best first.")
_QUALITY = {
    "enum": [q.value for q in QualityFilter],
    "default": "AUTO",
    "description": "Quality bar a face must pass to be indexed.",
}


def _paths() -> dict[str, Any]:
    detect_out = object_schema(
        {
            "model_version": {"type": "string"},
            "image": ref("ImageSize"),
            "faces": {"type": "array", "items": ref("DetectedFace")},
        },
        ["model_version", "image", "faces"],
    )
    index_out = object_schema(
        {
            "model_version": {"type": "string"},
            "image": ref("ImageSize"),
            "indexed": _FACES_OUT,
            "unindexed": {"type": "array", "items": ref("UnindexedFace")},
        },
        ["model_version", "image", "indexed", "unindexed"],
    )
    compare_out = object_schema(
        {
            "model_version": {"type": "string"},
            "source_face": ref("DetectedFace"),
            "matches": {"type": "array", "items": ref("CompareMatch")},
            "unmatched": {"type": "array", "items": ref("DetectedFace")},
        },
        ["model_version", "source_face", "matches", "unmatched"],
    )
    image_errors = ["400", "404", "413", "415", "422"]
    return {
        "/v1/detect": {
            "post": _operation(
                "detect",
                "Detect faces in an image",
                {"200": _json(detect_out, "Faces found, largest first.")},
                ["400", "413", "415"],
                body=_body({}, ["image"], ["image"]),
            )
        },
        "/v1/compare": {
            "post": _operation(
                "compare",
                "Compare the largest source face with every face in the target",
                {"200": _json(compare_out, "Target faces at or above the threshold, best first.")},
                ["400", "413", "415"],
                body=_body(
                    {"threshold": _COMPARE_THRESHOLD}, ["source", "target"], ["source", "target"]
                ),
            )
        },
        "/v1/collections": {
            "post": _operation(
                "createCollection",
                "Create a collection",
                {"201": _json(ref("Collection"), "The new collection.")},
                ["400", "409", "413", "415", "422", "503"],
                body=_body(
                    {
                        "name": {"type": "string", "examples": ["staff"]},
                        "model_pack": {
                            "type": "string",
                            "description": "Model pack the collection is pinned to.",
                            "examples": ["dlib-r29"],
                        },
                        "vector_backend": {
                            "type": "string",
                            "description": "Where the collection's vectors live: pgvector "
                            "(default) or pinecone (when the service has a Pinecone API key).",
                            "examples": ["pgvector", "pinecone"],
                        },
                        "vector_options": {
                            "type": "object",
                            "description": "Backend options. Pinecone: cloud (aws, gcp, "
                            "azure) and region of the collection's serverless index.",
                            "examples": [{"cloud": "aws", "region": "us-east-1"}],
                        },
                        "metadata": _METADATA,
                    },
                    [],
                    ["name"],
                ),
            ),
            "get": _operation(
                "listCollections",
                "List collections",
                {
                    "200": _json(
                        object_schema(
                            {"collections": {"type": "array", "items": ref("Collection")}}
                        ),
                        "Every collection.",
                    )
                },
                ["503"],  # the database may be down for a moment
            ),
        },
        "/v1/collections/{name}": {
            "get": _operation(
                "describeCollection",
                "Describe a collection (with its face count)",
                {"200": _json(ref("Collection"), "The collection.")},
                ["404"],
                parameters=[_NAME],
            ),
            "delete": _operation(
                "deleteCollection",
                "Delete a collection and every face in it",
                {"204": {"description": "Deleted; no body."}},
                ["404"],
                parameters=[_NAME],
            ),
        },
        "/v1/collections/{name}/faces": {
            "post": _operation(
                "indexFaces",
                "Index the faces of an image",
                {"200": _json(index_out, "Faces indexed, and why the others were not.")},
                image_errors,
                parameters=[_NAME],
                body=_body(
                    {
                        "external_image_id": {
                            "type": "string",
                            "maxLength": 255,
                            "description": "Your id for the image, returned with its faces.",
                            "examples": ["badge-1234"],
                        },
                        "max_faces": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": 100,
                            "description": "Index at most this many (the largest) faces.",
                            "examples": [1],
                        },
                        "quality_filter": _QUALITY,
                        "metadata": _METADATA,
                    },
                    ["image"],
                    ["image"],
                ),
            ),
            "get": _operation(
                "listFaces",
                "List the faces of a collection, a page at a time",
                {
                    "200": _json(
                        object_schema(
                            {"faces": _FACES_OUT, "next_cursor": {"type": ["string", "null"]}},
                            ["faces", "next_cursor"],
                        ),
                        "One page; pass next_cursor back as cursor for the next (null: last).",
                    )
                },
                ["400", "404"],
                parameters=[
                    _NAME,
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 4096},
                        "description": "Faces per page (default 100).",
                        "example": 100,
                    },
                    {
                        "name": "cursor",
                        "in": "query",
                        "schema": {"type": "string"},
                        "description": "next_cursor of the previous page.",
                    },
                ],
            ),
        },
        "/v1/collections/{name}/faces/{face_id}": {
            "delete": _operation(
                "deleteFace",
                "Delete one face",
                {
                    "200": _json(
                        object_schema({"deleted": {"type": "array", "items": {"type": "string"}}}),
                        "The id of the face deleted.",
                    )
                },
                ["400", "404"],
                parameters=[_NAME, _FACE_ID],
            )
        },
        "/v1/collections/{name}/search": {
            "post": _operation(
                "searchFacesByImage",
                "Search a collection with the largest face of an image",
                {"200": _SEARCH},
                image_errors,
                parameters=[_NAME],
                body=_body(
                    {"threshold": _THRESHOLD, "max_results": _MAX_RESULTS}, ["image"], ["image"]
                ),
            )
        },
        "/v1/collections/{name}/faces/{face_id}/search": {
            "post": _operation(
                "searchFacesById",
                "Search a collection with one of its faces (itself excluded)",
                {"200": _SEARCH},
                ["400", "404", "415", "422"],
                parameters=[_NAME, _FACE_ID],
                body=_body({"threshold": _THRESHOLD, "max_results": _MAX_RESULTS}, [], []),
                description="The body is optional; without one the defaults apply.",
            )
        },
        **_person_paths(),
        "/healthz": {
            "get": _operation(
                "liveness",
                "Liveness: the process serves HTTP",
                {"200": _json(object_schema({"status": {"const": "ok"}}), "Alive.")},
                [],
            )
        },
        "/readyz": {
            "get": _operation(
                "readiness",
                "Readiness: models loaded and database reachable",
                {
                    "200": _json(ref("Readiness"), "Every check passed."),
                    "503": _json(ref("Readiness"), "A check failed (see `checks`)."),
                },
                [],
            )
        },
        "/metrics": {
            "get": _operation(
                "metrics",
                "Prometheus metrics",
                {
                    "200": {
                        "description": "Prometheus text exposition format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
                [],
            )
        },
        "/openapi.json": {
            "get": _operation(
                "openapi",
                "This document",
                {"200": _json({"type": "object"}, "OpenAPI 3.1 document.")},
                [],
            )
        },
        "/docs": {
            "get": _operation(
                "docs",
                "Human-readable API reference (this document as HTML)",
                {
                    "200": {
                        "description": "HTML page.",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    }
                },
                [],
            )
        },
    }


def _person_paths() -> dict[str, Any]:
    page = object_schema(
        {
            "persons": {"type": "array", "items": ref("Person")},
            "next_cursor": {"type": ["string", "null"]},
        },
        ["persons", "next_cursor"],
    )
    search = {"threshold": _THRESHOLD, "max_results": _PERSON_MAX_RESULTS}
    return {
        "/v1/collections/{name}/persons": {
            "post": _operation(
                "createPerson",
                "Create a person (without faces yet)",
                {"201": _json(ref("Person"), "The new person.")},
                ["400", "404", "409", "413", "415"],
                parameters=[_NAME],
                body=_body(
                    {
                        "person_id": {
                            "type": "string",
                            "pattern": "^[a-zA-Z0-9_.:-]{1,128}$",
                            "description": "Your id for the person, unique in the collection.",
                            "examples": ["employee-1234"],
                        },
                        "metadata": _METADATA,
                        "request_token": _REQUEST_TOKEN,
                    },
                    [],
                    ["person_id"],
                ),
            ),
            "get": _operation(
                "listPersons",
                "List the persons of a collection by id, a page at a time",
                {"200": _json(page, "One page; pass next_cursor back as cursor (null: last).")},
                ["400", "404"],
                parameters=[
                    _NAME,
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 4096},
                        "description": "Persons per page (default 100).",
                        "example": 100,
                    },
                    {
                        "name": "cursor",
                        "in": "query",
                        "schema": {"type": "string"},
                        "description": "next_cursor of the previous page.",
                    },
                ],
            ),
        },
        "/v1/collections/{name}/persons/search": {
            "post": _operation(
                "searchPersonsByImage",
                "Search the persons of a collection with the largest face of an image",
                {"200": _PERSON_SEARCH},
                ["400", "404", "413", "415", "422"],
                parameters=[_NAME],
                body=_body(search, ["image"], ["image"]),
                description="A person's similarity is the best of its faces'. Only faces "
                "that belong to a person are searched.",
            )
        },
        "/v1/collections/{name}/persons/{person_id}": {
            "get": _operation(
                "describePerson",
                "Describe a person (with its face count)",
                {"200": _PERSON},
                ["400", "404"],
                parameters=[_NAME, _PERSON_ID],
            ),
            "delete": _operation(
                "deletePerson",
                "Delete a person; its faces stay unless delete_faces is true",
                {"204": {"description": "Deleted; no body."}},
                ["400", "404"],
                parameters=[
                    _NAME,
                    _PERSON_ID,
                    {
                        "name": "delete_faces",
                        "in": "query",
                        "schema": {"type": "boolean", "default": False},
                        "description": "Delete the person's faces too (default: they stay, "
                        "belonging to nobody).",
                    },
                    {
                        "name": "request_token",
                        "in": "query",
                        "schema": {"type": "string"},
                        "description": _REQUEST_TOKEN["description"],
                    },
                ],
            ),
        },
        "/v1/collections/{name}/persons/{person_id}/faces": {
            "post": _operation(
                "associateFaces",
                "Associate indexed faces with a person",
                {"200": _ASSOCIATION},
                ["400", "404", "413", "415", "422"],
                parameters=[_NAME, _PERSON_ID],
                body=_body(
                    {
                        "face_ids": _FACE_IDS,
                        "threshold": _ASSOCIATION_THRESHOLD,
                        "request_token": _REQUEST_TOKEN,
                    },
                    [],
                    ["face_ids"],
                ),
                description="A face already the person's counts as associated. Refused, with "
                "reasons: `FACE_NOT_FOUND`, `ASSOCIATED_TO_A_DIFFERENT_USER`, "
                "`LOW_MATCH_CONFIDENCE`. A person holds at most 100 faces.",
            ),
            "delete": _operation(
                "disassociateFaces",
                "Disassociate faces from a person (the faces stay in the collection)",
                {"200": _ASSOCIATION},
                ["400", "404", "413", "415"],
                parameters=[_NAME, _PERSON_ID],
                body=_body(
                    {"face_ids": _FACE_IDS, "request_token": _REQUEST_TOKEN}, [], ["face_ids"]
                ),
                description="A face that belongs to nobody counts as disassociated. Refused, "
                "with reasons: `FACE_NOT_FOUND`, `ASSOCIATED_TO_A_DIFFERENT_USER`.",
            ),
        },
        "/v1/collections/{name}/persons/{person_id}/merge": {
            "post": _operation(
                "mergePersons",
                "Merge another person into this one",
                {"200": _json(ref("Person"), "This person, with the other's faces.")},
                ["400", "404", "413", "415"],
                parameters=[_NAME, _PERSON_ID],
                body=_body(
                    {
                        "other_person_id": {
                            "type": "string",
                            "description": "The person to merge in; it is deleted.",
                            "examples": ["employee-1234-duplicate"],
                        }
                    },
                    [],
                    ["other_person_id"],
                ),
                description="One transaction. This person keeps its metadata and gains the "
                "keys of the other's it lacks; together they may hold at most 100 faces.",
            )
        },
        "/v1/collections/{name}/faces/{face_id}/persons/search": {
            "post": _operation(
                "searchPersonsByFace",
                "Search the persons of a collection with one of its faces",
                {"200": _PERSON_SEARCH},
                ["400", "404", "415", "422"],
                parameters=[_NAME, _FACE_ID],
                body=_body(search, [], []),
                description="The face itself is left out: its own person is matched through "
                "its other faces. The body is optional.",
            )
        },
    }


def openapi_document() -> dict[str, Any]:
    """A fresh copy of the whole document."""
    return copy.deepcopy(
        {
            "openapi": "3.1.0",
            "info": {
                "title": "faceserve REST API",
                "version": "1",
                "description": (
                    "Detect faces, index them in collections, group them into persons, search "
                    "and compare them. "
                    "Images are sent as multipart file parts, or as base64 strings in a JSON "
                    "body. Similarities are percentages (0-100) calibrated per model pack. "
                    'Every error is `{"error": {"code", "message"}}`.'
                ),
            },
            "paths": _paths(),
            "components": {"schemas": SCHEMAS},
        }
    )
