"""What collections hold: faces, persons, unassigned faces, images, the last clustering
run; per collection and over the whole service."""

from __future__ import annotations

from fastapi import APIRouter

from serve_app.api.rest.auth import allow
from serve_app.api.rest.deps import ServicesDep
from serve_app.api.rest.errors import error_responses
from serve_app.api.rest.models_people import CollectionStatsOut, ServiceStatsOut

router = APIRouter(tags=["stats"])


@router.get(
    "/v1/collections/{name}/stats",
    summary="A collection's stats",
    response_model=CollectionStatsOut,
    responses=error_responses(404),
    dependencies=[allow("read")],
)
async def collection_stats(name: str, services: ServicesDep) -> CollectionStatsOut:
    return CollectionStatsOut.of(await services.people.collection_stats(name))


@router.get(
    "/v1/stats",
    summary="The service's stats",
    description="Totals, per model pack, and per collection.",
    response_model=ServiceStatsOut,
    responses=error_responses(),
    dependencies=[allow("read", scoped=False)],
)
async def service_stats(services: ServicesDep) -> ServiceStatsOut:
    return ServiceStatsOut.of(await services.people.service_stats())
