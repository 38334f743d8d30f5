"""The audit log in the control schema: appended to, read a page at a time, pruned by age,
and cleared of an erased person's ids (only that an erasure happened is kept)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, func, select, text

from serve_app.store import validation as check
from serve_app.store.control import CONTROL_SCHEMA, audit_log

MAX_PAGE = 1000
MAX_IDS = 100  # ids kept per entry: an audit line, not a copy of the collection


@dataclass
class AuditEntry:
    """One line of the log, filled in while the request runs."""

    operation: str
    key_id: str | None = None
    client: str | None = None
    collection: str | None = None
    face_ids: list[str] = field(default_factory=list)
    person_ids: list[str] = field(default_factory=list)
    status: int = 0
    detail: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "client": self.client,
            "operation": self.operation[:200],
            "collection": None if self.collection is None else self.collection[:255],
            "face_ids": [str(i)[:64] for i in self.face_ids[:MAX_IDS]],
            "person_ids": [str(i)[:255] for i in self.person_ids[:MAX_IDS]],
            "status": int(self.status),
            "detail": self.detail,
        }


def append(conn: Connection, entries: Sequence[AuditEntry]) -> None:
    if entries:
        conn.execute(audit_log.insert(), [e.row() for e in entries])


def read_page(
    conn: Connection,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    key_id: str | None = None,
    collection: str | None = None,
    operation: str | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Entries oldest first matching every filter given, and the next page's cursor."""
    limit = check.positive_int("limit", limit, maximum=MAX_PAGE)
    query = select(audit_log)
    if cursor is not None:
        query = query.where(audit_log.c.id > check.decode_cursor(cursor))
    if since is not None:
        query = query.where(audit_log.c.at >= since)
    if until is not None:
        query = query.where(audit_log.c.at < until)
    for column, value in (
        (audit_log.c.key_id, key_id),
        (audit_log.c.collection, collection),
        (audit_log.c.operation, operation),
    ):
        if value is not None:
            query = query.where(column == value)
    rows = conn.execute(query.order_by(audit_log.c.id).limit(limit + 1)).all()
    page = rows[:limit]
    next_cursor = check.encode_cursor(page[-1].id) if len(rows) > limit else None
    return [
        {
            "id": r.id,
            "at": r.at.isoformat(),
            "key_id": r.key_id,
            "client": r.client,
            "operation": r.operation,
            "collection": r.collection,
            "face_ids": list(r.face_ids),
            "person_ids": list(r.person_ids),
            "status": r.status,
            "detail": dict(r.detail),
        }
        for r in page
    ], next_cursor


def prune(conn: Connection, retention_days: float) -> int:
    """Delete entries older than the retention; how many went."""
    result = conn.execute(
        audit_log.delete().where(
            audit_log.c.at
            < func.now() - func.make_interval(0, 0, 0, 0, 0, 0, retention_days * 86400)
        )
    )
    return int(result.rowcount or 0)


def redact(
    conn: Connection, collection: str, face_ids: Sequence[str], person_ids: Sequence[str]
) -> int:
    """Remove an erased person's ids (and their faces') from the collection's earlier
    entries; how many entries changed."""
    result = conn.execute(
        text(
            f"UPDATE {CONTROL_SCHEMA}.audit_log SET "
            "face_ids = ARRAY(SELECT x FROM unnest(face_ids) x WHERE x <> ALL(:faces)), "
            "person_ids = ARRAY(SELECT x FROM unnest(person_ids) x WHERE x <> ALL(:persons)) "
            "WHERE collection = :collection AND (face_ids && :faces OR person_ids && :persons)"
        ).bindparams(
            bindparam("faces", type_=audit_log.c.face_ids.type),
            bindparam("persons", type_=audit_log.c.person_ids.type),
        ),
        {"collection": collection, "faces": list(face_ids), "persons": list(person_ids)},
    )
    return int(result.rowcount or 0)
