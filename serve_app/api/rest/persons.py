"""Persons of a collection: create, list, describe, delete, associate and disassociate
faces, merge, and search persons by image or by face."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from serve_app.api.rest.auth import allow, audit_note
from serve_app.api.rest.bodies import Parsed, ReadBody
from serve_app.api.rest.deps import ServicesDep
from serve_app.api.rest.errors import error_responses
from serve_app.api.rest.faces import Cursor, PageLimit
from serve_app.api.rest.models import (
    AssociateFacesRequest,
    AssociationResponse,
    CreatePersonRequest,
    DisassociateFacesRequest,
    MergePersonsRequest,
    PersonOut,
    PersonPage,
    PersonSearchResponse,
    RequestToken,
    SearchPersonsByFaceRequest,
    SearchPersonsByImageRequest,
)
from serve_app.service import params

router = APIRouter(tags=["persons"])
PERSONS = "/v1/collections/{name}/persons"
PERSON = PERSONS + "/{person_id}"

CREATE = ReadBody(CreatePersonRequest)
ASSOCIATE = ReadBody(AssociateFacesRequest)
DISASSOCIATE = ReadBody(DisassociateFacesRequest)
MERGE = ReadBody(MergePersonsRequest)
BY_IMAGE = ReadBody(SearchPersonsByImageRequest)
BY_FACE = ReadBody(SearchPersonsByFaceRequest)


@router.post(
    PERSONS,
    summary="Create a person",
    status_code=201,
    response_model=PersonOut,
    responses=error_responses(404, 409, 413, 415),
    openapi_extra=CREATE.openapi,
    dependencies=[allow("write")],
)
async def create_person(
    name: str,
    request: Request,
    services: ServicesDep,
    body: Annotated[Parsed[CreatePersonRequest], Depends(CREATE)],
) -> PersonOut:
    f = body.fields
    audit_note(request, person_ids=[f.person_id])
    person = await services.persons.create_person(
        name, f.person_id, f.metadata, request_token=f.request_token
    )
    return PersonOut.of(person)


@router.get(
    PERSONS,
    summary="List the persons of a collection",
    description="By person id, a page at a time.",
    response_model=PersonPage,
    responses=error_responses(404),
    dependencies=[allow("read")],
)
async def list_persons(
    name: str,
    services: ServicesDep,
    limit: PageLimit = params.DEFAULT_PAGE,
    cursor: Cursor = None,
) -> PersonPage:
    persons, next_cursor = await services.persons.list_persons(
        name, limit=limit, cursor=cursor or None
    )
    return PersonPage(persons=[PersonOut.of(p) for p in persons], next_cursor=next_cursor)


@router.post(
    PERSONS + "/search",
    summary="Search persons with the largest face of an image",
    description="A person's similarity is the best of its faces'.",
    response_model=PersonSearchResponse,
    responses=error_responses(404, 413, 415, 422),
    openapi_extra=BY_IMAGE.openapi,
    dependencies=[allow("read")],
)
async def search_persons_by_image(
    name: str,
    services: ServicesDep,
    body: Annotated[Parsed[SearchPersonsByImageRequest], Depends(BY_IMAGE)],
) -> PersonSearchResponse:
    result = await services.persons.search_persons_by_image(
        name, body.image(), threshold=body.fields.threshold, max_results=body.fields.max_results
    )
    return PersonSearchResponse.of(result)


@router.get(
    PERSON,
    summary="Describe a person",
    response_model=PersonOut,
    responses=error_responses(404),
    dependencies=[allow("read")],
)
async def describe_person(name: str, person_id: str, services: ServicesDep) -> PersonOut:
    return PersonOut.of(await services.persons.get_person(name, person_id))


@router.delete(
    PERSON,
    summary="Delete a person",
    description="Its faces stay, belonging to nobody, unless `delete_faces=true`.",
    status_code=204,
    response_class=Response,
    responses=error_responses(404),
    dependencies=[allow("write")],
)
async def delete_person(
    name: str,
    person_id: str,
    services: ServicesDep,
    delete_faces: Annotated[bool, Query(description="Delete the person's faces too.")] = False,
    request_token: Annotated[RequestToken | None, Query()] = None,
) -> Response:
    await services.persons.delete_person(
        name, person_id, delete_faces=delete_faces, request_token=request_token
    )
    return Response(status_code=204)


@router.post(
    PERSON + "/faces",
    summary="Associate indexed faces with a person",
    description="Once the person has faces, a new face must reach `threshold` with one of "
    "them; a face of another person is refused.",
    response_model=AssociationResponse,
    responses=error_responses(404, 413, 415, 422),
    openapi_extra=ASSOCIATE.openapi,
    dependencies=[allow("write")],
)
async def associate_faces(
    name: str,
    person_id: str,
    request: Request,
    services: ServicesDep,
    body: Annotated[Parsed[AssociateFacesRequest], Depends(ASSOCIATE)],
) -> AssociationResponse:
    f = body.fields
    result = await services.persons.associate_faces(
        name, person_id, f.face_ids, threshold=f.threshold, request_token=f.request_token
    )
    audit_note(request, face_ids=f.face_ids)
    return AssociationResponse.of(result)


@router.delete(
    PERSON + "/faces",
    summary="Disassociate faces from a person",
    response_model=AssociationResponse,
    responses=error_responses(404, 413, 415),
    openapi_extra=DISASSOCIATE.openapi,
    dependencies=[allow("write")],
)
async def disassociate_faces(
    name: str,
    person_id: str,
    services: ServicesDep,
    body: Annotated[Parsed[DisassociateFacesRequest], Depends(DISASSOCIATE)],
) -> AssociationResponse:
    f = body.fields
    result = await services.persons.disassociate_faces(
        name, person_id, f.face_ids, request_token=f.request_token
    )
    return AssociationResponse.of(result)


@router.post(
    PERSON + "/merge",
    summary="Merge another person into this one",
    description="The other person's faces move here (one transaction) and it is deleted.",
    response_model=PersonOut,
    responses=error_responses(404, 413, 415),
    openapi_extra=MERGE.openapi,
    dependencies=[allow("write")],
)
async def merge_persons(
    name: str,
    person_id: str,
    services: ServicesDep,
    body: Annotated[Parsed[MergePersonsRequest], Depends(MERGE)],
) -> PersonOut:
    person = await services.persons.merge_persons(name, person_id, body.fields.other_person_id)
    return PersonOut.of(person)


@router.post(
    "/v1/collections/{name}/faces/{face_id}/persons/search",
    summary="Search persons with an indexed face",
    description="The face itself is left out: its own person is found through its other faces.",
    response_model=PersonSearchResponse,
    responses=error_responses(404, 413, 415, 422),
    openapi_extra=BY_FACE.openapi,
    dependencies=[allow("read")],
)
async def search_persons_by_face(
    name: str,
    face_id: str,
    services: ServicesDep,
    body: Annotated[Parsed[SearchPersonsByFaceRequest], Depends(BY_FACE)],
) -> PersonSearchResponse:
    result = await services.persons.search_persons_by_face(
        name, face_id, threshold=body.fields.threshold, max_results=body.fields.max_results
    )
    return PersonSearchResponse.of(result)
