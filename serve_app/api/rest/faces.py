"""Faces of a collection: index, list, delete, and search by image or by face."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from serve_app.api.rest.auth import allow, audit_note
from serve_app.api.rest.bodies import Parsed, ReadBody
from serve_app.api.rest.deps import MetricsDep, ServicesDep
from serve_app.api.rest.errors import error_responses
from serve_app.api.rest.models import (
    DeletedFaces,
    FaceOut,
    FacePage,
    IndexFacesRequest,
    IndexResponse,
    SearchByFaceRequest,
    SearchByImageRequest,
    SearchResponse,
)
from serve_app.errors import NotFound
from serve_app.service import params

router = APIRouter(tags=["faces"])
FACES = "/v1/collections/{name}/faces"
FACE = FACES + "/{face_id}"

INDEX = ReadBody(IndexFacesRequest)
SEARCH_BY_IMAGE = ReadBody(SearchByImageRequest)
SEARCH_BY_FACE = ReadBody(SearchByFaceRequest)

PageLimit = Annotated[int, Query(ge=1, le=params.MAX_PAGE, description="Most items on this page.")]
Cursor = Annotated[
    str | None, Query(description="`next_cursor` of the previous page; absent: the first.")
]


@router.post(
    FACES,
    summary="Index the faces of an image",
    description="Detects, filters (`max_faces`, `quality_filter`), embeds and stores the "
    "faces of one image in one transaction. Faces left out are listed with reasons.",
    response_model=IndexResponse,
    responses=error_responses(404, 413, 415, 422),
    openapi_extra=INDEX.openapi,
    dependencies=[allow("write")],
)
async def index_faces(
    name: str,
    request: Request,
    services: ServicesDep,
    metrics: MetricsDep,
    body: Annotated[Parsed[IndexFacesRequest], Depends(INDEX)],
) -> IndexResponse:
    f = body.fields
    result = await services.faces.index_faces(
        name,
        body.image(),
        external_image_id=f.external_image_id,
        max_faces=f.max_faces,
        quality_filter=f.quality_filter,
        metadata=f.metadata,
    )
    metrics.faces_indexed.labels(result.collection.name).inc(len(result.indexed))
    audit_note(request, face_ids=[f.face_id for f in result.indexed])
    return IndexResponse.of(result)


@router.get(
    FACES,
    summary="List the faces of a collection",
    description="Oldest first, a page at a time.",
    response_model=FacePage,
    responses=error_responses(404),
    dependencies=[allow("read")],
)
async def list_faces(
    name: str,
    services: ServicesDep,
    limit: PageLimit = params.DEFAULT_PAGE,
    cursor: Cursor = None,
) -> FacePage:
    faces, next_cursor = await services.faces.list_faces(name, limit=limit, cursor=cursor or None)
    return FacePage(faces=[FaceOut.of(f) for f in faces], next_cursor=next_cursor)


@router.delete(
    FACE,
    summary="Delete a face",
    response_model=DeletedFaces,
    responses=error_responses(404),
    dependencies=[allow("write")],
)
async def delete_face(name: str, face_id: str, services: ServicesDep) -> DeletedFaces:
    deleted = await services.faces.delete_faces(name, [face_id])
    if not deleted:
        raise NotFound(f"face {face_id} not found in collection {name!r}")
    return DeletedFaces(deleted=deleted)


@router.post(
    "/v1/collections/{name}/search",
    summary="Search a collection with the largest face of an image",
    response_model=SearchResponse,
    responses=error_responses(404, 413, 415, 422),
    openapi_extra=SEARCH_BY_IMAGE.openapi,
    dependencies=[allow("read")],
)
async def search_by_image(
    name: str,
    services: ServicesDep,
    body: Annotated[Parsed[SearchByImageRequest], Depends(SEARCH_BY_IMAGE)],
) -> SearchResponse:
    result = await services.faces.search_by_image(
        name,
        body.image(),
        threshold=body.fields.threshold,
        max_results=body.fields.max_results,
    )
    return SearchResponse.of(result)


@router.post(
    FACE + "/search",
    summary="Search a collection with one of its faces",
    description="The face itself is left out of the matches.",
    response_model=SearchResponse,
    responses=error_responses(404, 413, 415, 422),
    openapi_extra=SEARCH_BY_FACE.openapi,
    dependencies=[allow("read")],
)
async def search_by_face_id(
    name: str,
    face_id: str,
    services: ServicesDep,
    body: Annotated[Parsed[SearchByFaceRequest], Depends(SEARCH_BY_FACE)],
) -> SearchResponse:
    result = await services.faces.search_by_face_id(
        name, face_id, threshold=body.fields.threshold, max_results=body.fields.max_results
    )
    return SearchResponse.of(result)
