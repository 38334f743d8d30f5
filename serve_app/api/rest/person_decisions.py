"""What a user decides about a person: its name and metadata, splitting it, "not this
person"; and the person's faces, a page at a time. Clustering keeps every decision."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from serve_app.api.rest.auth import allow
from serve_app.api.rest.bodies import Parsed, ReadBody
from serve_app.api.rest.deps import ServicesDep
from serve_app.api.rest.errors import error_responses
from serve_app.api.rest.faces import Cursor, PageLimit
from serve_app.api.rest.models import FaceOut, PersonOut
from serve_app.api.rest.models_people import (
    PersonFacePage,
    RejectFaceRequest,
    SplitPersonRequest,
    SplitResponse,
    UpdatePersonRequest,
)
from serve_app.api.rest.persons import PERSON
from serve_app.service import params

router = APIRouter(tags=["persons"])
UPDATE = ReadBody(UpdatePersonRequest)
SPLIT = ReadBody(SplitPersonRequest)
REJECT = ReadBody(RejectFaceRequest)


@router.patch(
    PERSON,
    summary="Name a person, or change its metadata",
    description="Only the fields given change; `name: null` clears the name.",
    response_model=PersonOut,
    responses=error_responses(404, 413, 415),
    openapi_extra=UPDATE.openapi,
    dependencies=[allow("write")],
)
async def update_person(
    name: str,
    person_id: str,
    services: ServicesDep,
    body: Annotated[Parsed[UpdatePersonRequest], Depends(UPDATE)],
) -> PersonOut:
    changes = {k: getattr(body.fields, k) for k in body.fields.model_fields_set}
    return PersonOut.of(await services.people.update_person(name, person_id, changes))


@router.get(
    PERSON + "/faces",
    summary="The faces of a person",
    description="In indexing order, a page at a time.",
    response_model=PersonFacePage,
    responses=error_responses(404),
    dependencies=[allow("read")],
)
async def person_faces(
    name: str,
    person_id: str,
    services: ServicesDep,
    limit: PageLimit = params.DEFAULT_PAGE,
    cursor: Cursor = None,
) -> PersonFacePage:
    faces, next_cursor = await services.people.person_faces(
        name, person_id, limit=limit, cursor=cursor or None
    )
    return PersonFacePage(faces=[FaceOut.of(f) for f in faces], next_cursor=next_cursor)


@router.post(
    PERSON + "/split",
    summary="Move some of a person's faces to a new person",
    description="Both persons' faces become confirmed, so clustering keeps the split.",
    status_code=201,
    response_model=SplitResponse,
    responses=error_responses(404, 409, 413, 415),
    openapi_extra=SPLIT.openapi,
    dependencies=[allow("write")],
)
async def split_person(
    name: str,
    person_id: str,
    services: ServicesDep,
    body: Annotated[Parsed[SplitPersonRequest], Depends(SPLIT)],
) -> SplitResponse:
    f = body.fields
    result = await services.people.split_person(name, person_id, f.face_ids, f.new_person_id)
    return SplitResponse.of(result)


@router.post(
    PERSON + "/faces/{face_id}/reject",
    summary="Not this person",
    description="The face leaves the person (if it was there) and clustering never puts it "
    "back there.",
    response_model=PersonOut,
    responses=error_responses(404, 413, 415),
    openapi_extra=REJECT.openapi,
    dependencies=[allow("write")],
)
async def reject_face(
    name: str,
    person_id: str,
    face_id: str,
    services: ServicesDep,
    body: Annotated[Parsed[RejectFaceRequest], Depends(REJECT)],
) -> PersonOut:
    return PersonOut.of(await services.people.reject_face(name, person_id, face_id))
