"""The audit log, for admins: filtered, oldest first, a page at a time."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from serve_app.api.rest.auth import allow
from serve_app.api.rest.errors import error_responses
from serve_app.api.rest.faces import Cursor
from serve_app.api.rest.keys import AccessDep
from serve_app.api.rest.models_security import AuditEntryOut, AuditPage
from serve_app.store.audit import MAX_PAGE

router = APIRouter(tags=["audit"])
Text = Annotated[str | None, Query(max_length=255)]


@router.get(
    "/v1/audit",
    summary="Read the audit log",
    description="Every write, search, key change and refusal: who (key id, client address), "
    "what (operation, collection, face and person ids) and the status. Never image bytes, "
    "embeddings or secrets.",
    response_model=AuditPage,
    responses=error_responses(404),
    dependencies=[allow("admin", scoped=False)],
)
async def read_audit(
    access: AccessDep,
    since: Annotated[datetime | None, Query(description="From this time (ISO 8601).")] = None,
    until: Annotated[datetime | None, Query(description="Before this time.")] = None,
    key_id: Text = None,
    collection: Text = None,
    operation: Text = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    cursor: Cursor = None,
) -> AuditPage:
    entries, next_cursor = await access.audit_page(
        since=since,
        until=until,
        key_id=key_id,
        collection=collection,
        operation=operation,
        limit=limit,
        cursor=cursor or None,
    )
    return AuditPage(entries=[AuditEntryOut(**e) for e in entries], next_cursor=next_cursor)
