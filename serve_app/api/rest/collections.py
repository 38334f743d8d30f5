"""Collections: create, list, describe, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from serve_app.api.rest.auth import CallerDep, allow, audit_note
from serve_app.api.rest.bodies import Parsed, ReadBody
from serve_app.api.rest.deps import ServicesDep
from serve_app.api.rest.errors import error_responses
from serve_app.api.rest.models import CollectionList, CollectionOut, CreateCollectionRequest

router = APIRouter(tags=["collections"])
COLLECTION = "/v1/collections/{name}"

CREATE = ReadBody(CreateCollectionRequest)


@router.post(
    "/v1/collections",
    summary="Create a collection",
    description="Pinned to a model pack (the service's default unless named); its vectors in "
    "pgvector unless `vector_backend` says otherwise.",
    status_code=201,
    response_model=CollectionOut,
    responses=error_responses(409, 413, 415, 422),
    openapi_extra=CREATE.openapi,
    dependencies=[allow("admin", scoped=False)],
)
async def create_collection(
    request: Request,
    services: ServicesDep,
    body: Annotated[Parsed[CreateCollectionRequest], Depends(CREATE)],
) -> CollectionOut:
    f = body.fields
    audit_note(request, collection=f.name)
    collection = await services.faces.create_collection(
        f.name,
        f.model_pack,
        f.metadata,
        vector_backend=f.vector_backend,
        vector_options=f.vector_options,
    )
    return CollectionOut.of(collection)


@router.get(
    "/v1/collections",
    summary="List collections",
    response_model=CollectionList,
    responses=error_responses(),
    dependencies=[allow("read")],
)
async def list_collections(services: ServicesDep, caller: CallerDep) -> CollectionList:
    collections = await services.faces.list_collections()
    # A key scoped to collections sees only those: the others are not even listed.
    visible = [c for c in collections if caller.sees(c.name)]
    return CollectionList(collections=[CollectionOut.of(c) for c in visible])


@router.get(
    COLLECTION,
    summary="Describe a collection",
    response_model=CollectionOut,
    responses=error_responses(404),
    dependencies=[allow("read")],
)
async def describe_collection(name: str, services: ServicesDep) -> CollectionOut:
    return CollectionOut.of(await services.faces.describe_collection(name))


@router.delete(
    COLLECTION,
    summary="Delete a collection and all its faces",
    status_code=204,
    response_class=Response,
    responses=error_responses(404),
    dependencies=[allow("admin")],
)
async def delete_collection(name: str, services: ServicesDep) -> Response:
    await services.faces.delete_collection(name)
    return Response(status_code=204)
