"""The identification history of a collection, and the settings that turn it on.

Off by default (`match_history`); with it on, each identified face is a row (person or
unknown, similarity, box, source label, the API key once keys exist, time) kept for
`history_retention_days`. Expired rows are deleted as new ones are written and never read.
No image and no embedding are kept.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, literal, select
from sqlalchemy.dialects.postgresql import insert

from serve_app.errors import InvalidParameter
from serve_app.store import validation as check
from serve_app.store.access import CollectionAccess
from serve_app.store.collection_schema import tables_for
from serve_app.store.control import collection_settings
from serve_app.store.people_records import Identification, PeopleSettings
from serve_app.store.persons import MAX_PAGE, _person_row
from serve_app.store.records import CollectionRecord

DEFAULT_SETTINGS = PeopleSettings(match_history=False, history_retention_days=30)
MAX_RETENTION_DAYS = 3650
_CURSOR = re.compile(r"h1:(\d{1,19})")


class HistoryStorage:
    """Identification history of every collection."""

    def __init__(self, access: CollectionAccess) -> None:
        self._access = access

    def people_settings(self, collection_name: str) -> PeopleSettings:
        with self._access.reading() as conn:
            collection = self._access.collection(conn, collection_name)
            return _settings(conn, collection)

    def set_people_settings(
        self,
        collection_name: str,
        match_history: bool | None = None,
        history_retention_days: int | None = None,
    ) -> PeopleSettings:
        """Change the given settings; the others keep their value."""
        if match_history is not None and not isinstance(match_history, bool):
            raise InvalidParameter("match_history must be true or false")
        if history_retention_days is not None:
            history_retention_days = check.positive_int(
                "history_retention_days", history_retention_days, maximum=MAX_RETENTION_DAYS
            )
        with self._access.writing(collection_name) as (conn, collection, _t):
            now = _settings(conn, collection)
            values = {
                "match_history": now.match_history if match_history is None else match_history,
                "history_retention_days": history_retention_days or now.history_retention_days,
            }
            conn.execute(
                insert(collection_settings)
                .values(collection_id=collection.id, **values)
                .on_conflict_do_update(index_elements=["collection_id"], set_=values)
            )
            return PeopleSettings(**values)

    def record_identifications(
        self, collection_name: str, identifications: Sequence[Identification]
    ) -> int:
        """Write the rows if the collection keeps a history (how many were written), and
        delete those past its retention."""
        with self._access.writing(collection_name) as (conn, collection, t):
            settings = _settings(conn, collection)
            if not settings.match_history:
                return 0
            conn.execute(
                t.identifications.delete().where(
                    t.identifications.c.created_at < _oldest_kept(settings)
                )
            )
            if not identifications:
                return 0
            external = sorted({i.person_id for i in identifications if i.person_id})
            row_ids = dict(
                conn.execute(
                    select(t.persons.c.external_id, t.persons.c.id).where(
                        t.persons.c.external_id.in_(external)
                    )
                ).all()
            )
            rows = [
                {
                    "person_id": row_ids.get(i.person_id) if i.person_id else None,
                    "similarity": i.similarity,
                    "bounding_box": check.json_object("bounding_box", i.bounding_box),
                    "source": check.short_text("source", i.source, required=False),
                    "key_id": i.key_id,
                }
                for i in identifications
                if i.person_id is None or i.person_id in row_ids  # a person deleted meanwhile
            ]
            if rows:
                conn.execute(t.identifications.insert(), rows)
            return len(rows)

    def identification_history(
        self,
        collection_name: str,
        person_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> tuple[list[Identification], str | None]:
        """Identifications, newest first, within the retention, of one person if given,
        in [since, until); and the cursor of the next page."""
        limit = check.positive_int("limit", limit, maximum=MAX_PAGE)
        before = None if cursor is None else _decode(cursor)
        with self._access.reading() as conn:
            collection = self._access.collection(conn, collection_name)
            t = tables_for(collection.schema_name)
            settings = _settings(conn, collection)
            h = t.identifications
            query = (
                select(h, t.persons.c.external_id)
                .select_from(h.outerjoin(t.persons, h.c.person_id == t.persons.c.id))
                .where(h.c.created_at >= _oldest_kept(settings))
            )
            if person_id is not None:
                row = _person_row(conn, t, check.person_id(person_id), collection_name)
                query = query.where(h.c.person_id == row.id)
            if since is not None:
                query = query.where(h.c.created_at >= since)
            if until is not None:
                query = query.where(h.c.created_at < until)
            if before is not None:
                query = query.where(h.c.seq < before)
            rows = conn.execute(query.order_by(h.c.seq.desc()).limit(limit + 1)).all()
        page = rows[:limit]
        items = [
            Identification(
                person_id=r.external_id,
                similarity=None if r.similarity is None else float(r.similarity),
                bounding_box=dict(r.bounding_box),
                source=r.source,
                key_id=r.key_id,
                created_at=r.created_at,
            )
            for r in page
        ]
        return items, (_encode(page[-1].seq) if len(rows) > limit else None)


def _settings(conn: Connection, collection: CollectionRecord) -> PeopleSettings:
    row = conn.execute(
        select(collection_settings).where(collection_settings.c.collection_id == collection.id)
    ).one_or_none()
    if row is None:
        return DEFAULT_SETTINGS
    return PeopleSettings(bool(row.match_history), int(row.history_retention_days))


def _oldest_kept(settings: PeopleSettings) -> Any:
    return func.now() - literal(timedelta(days=settings.history_retention_days))


def _encode(seq: int) -> str:
    return base64.urlsafe_b64encode(f"h1:{seq}".encode()).decode().rstrip("=")


def _decode(cursor: object) -> int:
    if isinstance(cursor, str) and len(cursor) <= 200:
        try:
            text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            text = ""
        match = _CURSOR.fullmatch(text)
        if match:
            return int(match.group(1))
    raise InvalidParameter(f"invalid pagination cursor {str(cursor)[:80]!r}")
