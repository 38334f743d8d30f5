"""Enroll a person from a photo, identify every face of an image, and recognize faces
(their embeddings, for clients that keep their own index)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from serve_app.api.rest.auth import CallerDep, allow
from serve_app.api.rest.bodies import Parsed, ReadBody
from serve_app.api.rest.deps import ServicesDep
from serve_app.api.rest.errors import error_responses
from serve_app.api.rest.models_people import (
    EnrollRequest,
    EnrollResponse,
    IdentifyRequest,
    IdentifyResponse,
    RecognizeRequest,
    RecognizeResponse,
)

router = APIRouter(tags=["identify"])
ENROLL = ReadBody(EnrollRequest)
IDENTIFY = ReadBody(IdentifyRequest)
RECOGNIZE = ReadBody(RecognizeRequest)


@router.post(
    "/v1/collections/{name}/enroll",
    summary="Enroll a person from a photo",
    description="Creates the person if needed, indexes the photo's largest face and makes it "
    "the person's, in one transaction. 409 `face_matches_another_person` (naming the person) "
    "when the face reaches `threshold` with another person.",
    status_code=201,
    response_model=EnrollResponse,
    responses=error_responses(404, 409, 413, 415, 422),
    openapi_extra=ENROLL.openapi,
    dependencies=[allow("write")],
)
async def enroll(
    name: str, services: ServicesDep, body: Annotated[Parsed[EnrollRequest], Depends(ENROLL)]
) -> EnrollResponse:
    f = body.fields
    outcome = await services.identify.enroll(
        name,
        body.image(),
        f.person_id,
        name=f.name,
        metadata=f.metadata,
        threshold=f.threshold,
        external_image_id=f.external_image_id,
    )
    return EnrollResponse.of(outcome)


@router.post(
    "/v1/collections/{name}/identify",
    summary="Identify every face of an image",
    description="Each face (largest first) with its best person at or above `threshold`, "
    "or `person: null` (unknown). Recorded in the history when the collection keeps one.",
    response_model=IdentifyResponse,
    responses=error_responses(404, 413, 415, 422),
    openapi_extra=IDENTIFY.openapi,
    dependencies=[allow("read")],
)
async def identify(
    name: str,
    services: ServicesDep,
    caller: CallerDep,
    body: Annotated[Parsed[IdentifyRequest], Depends(IDENTIFY)],
) -> IdentifyResponse:
    f = body.fields
    result = await services.identify.identify(
        name,
        body.image(),
        threshold=f.threshold,
        max_faces=f.max_faces,
        source=f.source,
        key_id=caller.key_id,  # the history says which key asked
    )
    return IdentifyResponse.of(result)


@router.post(
    "/v1/recognize",
    summary="Every face of an image with its embedding",
    description="For clients that keep their own index: the embeddings of the service's "
    "default model pack (`model_version`), L2-normalised.",
    response_model=RecognizeResponse,
    responses=error_responses(413, 415),
    openapi_extra=RECOGNIZE.openapi,
    dependencies=[allow("read")],
)
async def recognize(
    services: ServicesDep, body: Annotated[Parsed[RecognizeRequest], Depends(RECOGNIZE)]
) -> RecognizeResponse:
    result = await services.identify.recognize(body.image(), max_faces=body.fields.max_faces)
    return RecognizeResponse.of(result)
