"""Detect and compare: operations on images that store nothing."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from serve_app.api.rest.auth import allow
from serve_app.api.rest.bodies import Parsed, ReadBody
from serve_app.api.rest.deps import ServicesDep
from serve_app.api.rest.errors import error_responses
from serve_app.api.rest.models import (
    CompareRequest,
    CompareResponse,
    DetectedFaceOut,
    DetectRequest,
    DetectResponse,
    ImageSize,
)

router = APIRouter(tags=["images"])
IMAGE_ERRORS = (413, 415)

DETECT = ReadBody(DetectRequest)
COMPARE = ReadBody(CompareRequest)


@router.post(
    "/v1/detect",
    summary="Detect faces in an image",
    description="Boxes, five landmarks, confidence and quality of every face, largest first.",
    response_model=DetectResponse,
    responses=error_responses(*IMAGE_ERRORS),
    openapi_extra=DETECT.openapi,
    dependencies=[allow("read")],
)
async def detect(
    services: ServicesDep, body: Annotated[Parsed[DetectRequest], Depends(DETECT)]
) -> DetectResponse:
    found = await services.faces.detect(body.image())
    return DetectResponse(
        model_version=services.context.default_pipeline.model_version,
        image=ImageSize(width=found.width, height=found.height),
        faces=[DetectedFaceOut.of(face) for face in found.faces],
    )


@router.post(
    "/v1/compare",
    summary="Compare the largest face of one image with every face of another",
    response_model=CompareResponse,
    responses=error_responses(*IMAGE_ERRORS),
    openapi_extra=COMPARE.openapi,
    dependencies=[allow("read")],
)
async def compare(
    services: ServicesDep, body: Annotated[Parsed[CompareRequest], Depends(COMPARE)]
) -> CompareResponse:
    result = await services.faces.compare(
        body.image("source"), body.image("target"), body.fields.threshold
    )
    return CompareResponse.of(result)
