"""Rekognition's collection, face, search, detect and compare operations over the service layer.

Each handler gets the validated request (see `validation.py`) and returns the response
body; defaults are AWS's. The service does the work; this module only translates.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from serve_app.api.rekognition import shapes
from serve_app.api.rekognition.errors import RekognitionError
from serve_app.api.rekognition.images import ImageLoader
from serve_app.service import thresholds
from serve_app.service.access import OPEN, Principal
from serve_app.service.params import MAX_INDEX_FACES
from serve_app.service.services import Services
from serve_app.vision.image import read_image_size
from serve_app.vision.types import DetectedFace

DEFAULT_LIST_RESULTS = 1000
# Our pagination errors surface as InvalidParameter; on a list call they mean the token.
PAGINATION_ERRORS = {"invalid_parameter": "InvalidPaginationTokenException"}


@dataclass(frozen=True)
class Context:
    service: Services
    images: ImageLoader
    region: str
    caller: Principal = OPEN  # who asked: ListCollections shows a scoped key its own only


Handler = Callable[[Context, dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Operation:
    handler: Handler
    # Our error codes that mean something else for this operation.
    errors: dict[str, str]
    # The role a key needs to run it (`read`, `write`, `admin`): declared with the operation.
    role: str


OPERATIONS: dict[str, Operation] = {}


def operation(
    name: str, role: str, errors: dict[str, str] | None = None
) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        OPERATIONS[name] = Operation(handler, errors or {}, role)
        return handler

    return register


def page_size(value: int | None, default: int) -> int:
    """MaxResults: absent or 0 (the model allows 0) means the default."""
    return value or default


def image_frame(image: bytes, model_version: str) -> shapes.Frame:
    _, width, height = read_image_size(image)
    return shapes.Frame(width, height, model_version)


# Collections ---------------------------------------------------------------------------------


@operation("CreateCollection", "admin")
async def create_collection(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    metadata = {"tags": p["Tags"]} if p.get("Tags") else None
    collection = await ctx.service.faces.create_collection(p["CollectionId"], metadata=metadata)
    return {
        "StatusCode": 200,
        "CollectionArn": shapes.collection_arn(ctx.region, collection.name),
        "FaceModelVersion": collection.model_version,
    }


@operation("DeleteCollection", "admin")
async def delete_collection(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    await ctx.service.faces.delete_collection(p["CollectionId"])
    return {"StatusCode": 200}


@operation("DescribeCollection", "read")
async def describe_collection(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    collection = await ctx.service.faces.describe_collection(p["CollectionId"])
    result = {
        "FaceCount": collection.face_count or 0,
        "FaceModelVersion": collection.model_version,
        "CollectionARN": shapes.collection_arn(ctx.region, collection.name),
        "CreationTimestamp": shapes.timestamp(collection.created_at),
    }
    users = getattr(collection, "person_count", None)
    if users is not None:
        result["UserCount"] = users
    return result


def _encode_token(prefix: str, value: str) -> str:
    return base64.urlsafe_b64encode(f"{prefix}{value}".encode()).decode()


def _decode_token(prefix: str, token: str) -> str:
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    if not text.startswith(prefix):
        raise RekognitionError("InvalidPaginationTokenException", "invalid NextToken")
    return text[len(prefix) :]


@operation("ListCollections", "read")
async def list_collections(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    collections = await ctx.service.faces.list_collections()  # by name
    collections = [c for c in collections if ctx.caller.sees(c.name)]  # a scoped key: its own
    if "NextToken" in p:
        after = _decode_token("c1:", p["NextToken"])
        collections = [c for c in collections if c.name > after]
    limit = page_size(p.get("MaxResults"), DEFAULT_LIST_RESULTS)
    page = collections[:limit]
    result: dict[str, Any] = {
        "CollectionIds": [c.name for c in page],
        "FaceModelVersions": [c.model_version for c in page],
    }
    if len(collections) > limit:
        result["NextToken"] = _encode_token("c1:", page[-1].name)
    return result


# Faces ---------------------------------------------------------------------------------------


@operation("IndexFaces", "write")
async def index_faces(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    image = await ctx.images.load(p["Image"])
    # "IndexFaces returns no more than 100 detected faces ... even if you specify a larger
    # value for MaxFaces." DetectionAttributes change nothing: we only have the default set.
    max_faces = min(p.get("MaxFaces", MAX_INDEX_FACES), MAX_INDEX_FACES)
    result = await ctx.service.faces.index_faces(
        p["CollectionId"],
        image,
        external_image_id=p.get("ExternalImageId"),
        max_faces=max_faces,
        quality_filter=p.get("QualityFilter", "AUTO"),
    )
    version = result.collection.model_version
    frame = shapes.Frame(result.image_width, result.image_height, version)
    records = []
    for record in result.indexed:
        stored = shapes.face(record, frame)
        records.append({"Face": stored, "FaceDetail": frame.face_detail(record)})
    return {
        "FaceRecords": records,
        "FaceModelVersion": version,
        "UnindexedFaces": [
            {"Reasons": [str(r) for r in item.reasons], "FaceDetail": frame.face_detail(item.face)}
            for item in result.unindexed
        ],
    }


@operation("ListFaces", "read", errors=PAGINATION_ERRORS)
async def list_faces(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    collection = await ctx.service.faces.describe_collection(p["CollectionId"])
    limit = page_size(p.get("MaxResults"), DEFAULT_LIST_RESULTS)
    wanted = set(p.get("FaceIds") or ())
    user_id = p.get("UserId")
    cursor = p.get("NextToken")
    faces: list[Any] = []
    while True:
        page, cursor = await ctx.service.faces.list_faces(
            collection.name, limit=limit, cursor=cursor
        )
        if wanted:
            page = [f for f in page if f.face_id in wanted]
        if user_id is not None:
            page = [f for f in page if f.person_id == user_id]
        faces.extend(page)
        # A filtered page may come out empty: read on rather than answer with nothing.
        done = bool(wanted) and len(faces) >= len(wanted)
        if faces or cursor is None or done:
            break
    result: dict[str, Any] = {
        "Faces": [shapes.face(f) for f in faces],
        "FaceModelVersion": collection.model_version,
    }
    if cursor is not None and not done:
        result["NextToken"] = cursor
    return result


@operation("DeleteFaces", "write")
async def delete_faces(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    requested = list(dict.fromkeys(p["FaceIds"]))
    deleted = await ctx.service.faces.delete_faces(p["CollectionId"], requested)
    gone = set(deleted)
    return {
        "DeletedFaces": deleted,
        "UnsuccessfulFaceDeletions": [
            {"FaceId": face_id, "Reasons": ["FACE_NOT_FOUND"]}
            for face_id in requested
            if face_id not in gone
        ],
    }


# Search --------------------------------------------------------------------------------------


@operation("SearchFaces", "read")
async def search_faces(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    result = await ctx.service.faces.search_by_face_id(
        p["CollectionId"],
        p["FaceId"],
        threshold=p.get("FaceMatchThreshold", thresholds.SEARCH),
        max_results=p.get("MaxFaces"),
    )
    return {
        "SearchedFaceId": p["FaceId"],
        "FaceMatches": [shapes.face_match(m.similarity, m.face) for m in result.matches],
        "FaceModelVersion": result.collection.model_version,
    }


@operation("SearchFacesByImage", "read")
async def search_faces_by_image(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    image = await ctx.images.load(p["Image"])
    result = await ctx.service.faces.search_by_image(
        p["CollectionId"],
        image,
        threshold=p.get("FaceMatchThreshold", thresholds.SEARCH),
        max_results=p.get("MaxFaces"),
        quality_filter=p.get("QualityFilter"),
    )
    searched = result.searched_face
    assert isinstance(searched, DetectedFace)
    frame = image_frame(image, result.collection.model_version)
    return {
        "SearchedFaceBoundingBox": frame.box(searched.box),
        "SearchedFaceConfidence": float(searched.confidence),
        "FaceMatches": [shapes.face_match(m.similarity, m.face) for m in result.matches],
        "FaceModelVersion": result.collection.model_version,
    }


# Stateless -----------------------------------------------------------------------------------


@operation("DetectFaces", "read")
async def detect_faces(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    image = await ctx.images.load(p["Image"])
    found = await ctx.service.faces.detect(image)
    frame = shapes.Frame(
        found.width, found.height, ctx.service.faces.default_pipeline.model_version
    )
    # Attributes change nothing: the default set is all our packs measure.
    return {"FaceDetails": [frame.face_detail(face) for face in found.faces]}


@operation("CompareFaces", "read")
async def compare_faces(ctx: Context, p: dict[str, Any]) -> dict[str, Any]:
    source = await ctx.images.load(p["SourceImage"], "SourceImage")
    target = await ctx.images.load(p["TargetImage"], "TargetImage")
    result = await ctx.service.faces.compare(
        source,
        target,
        threshold=p.get("SimilarityThreshold", thresholds.COMPARE),
        quality_filter=p.get("QualityFilter"),
    )
    source_frame = image_frame(source, result.model_version)
    target_frame = image_frame(target, result.model_version)

    return {
        "SourceImageFace": {
            "BoundingBox": source_frame.box(result.source_face.box),
            "Confidence": float(result.source_face.confidence),
        },
        "FaceMatches": [
            {"Similarity": float(m.similarity), "Face": target_frame.face_detail(m.face)}
            for m in result.matches
        ],
        "UnmatchedFaces": [target_frame.face_detail(f) for f in result.unmatched],
    }
