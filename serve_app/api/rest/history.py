"""The identification history of a collection (kept only with its `match_history`
setting), per collection and per person, and the setting itself."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from serve_app.api.rest.auth import allow
from serve_app.api.rest.bodies import Parsed, ReadBody
from serve_app.api.rest.deps import ServicesDep
from serve_app.api.rest.errors import error_responses
from serve_app.api.rest.faces import Cursor, PageLimit
from serve_app.api.rest.models_people import (
    HistoryPage,
    IdentificationOut,
    PeopleSettingsOut,
    PeopleSettingsRequest,
)
from serve_app.api.rest.persons import PERSON
from serve_app.service import params

router = APIRouter(tags=["history"])
SETTINGS = ReadBody(PeopleSettingsRequest)
Since = Annotated[datetime | None, Query(description="From this time (ISO 8601), inclusive.")]
Until = Annotated[datetime | None, Query(description="Before this time (ISO 8601).")]


@router.get(
    "/v1/collections/{name}/history",
    summary="Identifications in a collection",
    description="Newest first, within the retention; filter by time and person.",
    response_model=HistoryPage,
    responses=error_responses(404),
    dependencies=[allow("read")],
)
async def collection_history(
    name: str,
    services: ServicesDep,
    since: Since = None,
    until: Until = None,
    person_id: Annotated[str | None, Query()] = None,
    limit: PageLimit = params.DEFAULT_PAGE,
    cursor: Cursor = None,
) -> HistoryPage:
    items, next_cursor = await services.identify.history(
        name, person_id, since, until, limit, cursor or None
    )
    return HistoryPage(
        identifications=[IdentificationOut.of(i) for i in items], next_cursor=next_cursor
    )


@router.get(
    PERSON + "/history",
    summary="Identifications of a person",
    response_model=HistoryPage,
    responses=error_responses(404),
    dependencies=[allow("read")],
)
async def person_history(
    name: str,
    person_id: str,
    services: ServicesDep,
    since: Since = None,
    until: Until = None,
    limit: PageLimit = params.DEFAULT_PAGE,
    cursor: Cursor = None,
) -> HistoryPage:
    items, next_cursor = await services.identify.history(
        name, person_id, since, until, limit, cursor or None
    )
    return HistoryPage(
        identifications=[IdentificationOut.of(i) for i in items], next_cursor=next_cursor
    )


@router.get(
    "/v1/collections/{name}/people-settings",
    summary="The collection's identification-history setting",
    response_model=PeopleSettingsOut,
    responses=error_responses(404),
    dependencies=[allow("read")],
)
async def people_settings(name: str, services: ServicesDep) -> PeopleSettingsOut:
    return PeopleSettingsOut.of(await services.people.settings(name))


@router.patch(
    "/v1/collections/{name}/people-settings",
    summary="Turn the identification history on or off, set its retention",
    response_model=PeopleSettingsOut,
    responses=error_responses(404, 413, 415),
    openapi_extra=SETTINGS.openapi,
    dependencies=[allow("admin")],
)
async def change_people_settings(
    name: str,
    services: ServicesDep,
    body: Annotated[Parsed[PeopleSettingsRequest], Depends(SETTINGS)],
) -> PeopleSettingsOut:
    f = body.fields
    settings = await services.people.change_settings(
        name, f.match_history, f.history_retention_days
    )
    return PeopleSettingsOut.of(settings)
