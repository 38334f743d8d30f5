"""What users decide about persons, and what a collection holds: name a person, split it,
reject a face ("not this person"), page through a person's faces, stats.

Decisions are facts clustering keeps (`clustering.py`): split faces are confirmed on both
sides and rejected from the old person; a rejected face never returns to that person.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from serve_app.errors import InvalidParameter
from serve_app.service import params
from serve_app.service.context import CollectionContext
from serve_app.store.people import generated_person_id
from serve_app.store.people_records import CollectionStats, PeopleSettings
from serve_app.store.records import FaceRecord, PersonRecord


@dataclass(frozen=True)
class SplitResult:
    person: PersonRecord  # the person split, after
    new_person: PersonRecord  # holding the faces moved


@dataclass(frozen=True)
class ServiceStats:
    """Totals over every collection, and each collection's stats."""

    collections: dict[str, CollectionStats]

    def total(self, name: str) -> int:
        return sum(getattr(s, name) for s in self.collections.values())

    def per_model(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for s in self.collections.values():
            entry = out.setdefault(s.model_version, {"collections": 0, "faces": 0, "persons": 0})
            entry["collections"] += 1
            entry["faces"] += s.faces
            entry["persons"] += s.persons
        return out


class PeopleService:
    """Person decisions and stats over one `CollectionContext`."""

    def __init__(self, context: CollectionContext) -> None:
        self.context = context
        self._storage = context.storage

    async def update_person(
        self, collection: str, person_id: str, changes: dict[str, Any]
    ) -> PersonRecord:
        """Set `name` (null clears it) and/or replace `metadata`; other keys are refused."""
        unknown = set(changes) - {"name", "metadata"}
        if unknown:
            raise InvalidParameter(f"cannot change {', '.join(sorted(unknown))} of a person")
        if "metadata" in changes:
            changes = changes | {"metadata": params.metadata(changes["metadata"])}
        return await self._storage.update_person(collection, person_id, changes)

    async def split_person(
        self, collection: str, person_id: str, face_ids: list[str], new_person_id: str | None
    ) -> SplitResult:
        """Move `face_ids` (the person's) to a new person, `new_person_id` or a generated
        one. Clustering keeps the split: both sides' faces are confirmed."""
        ids = params.face_ids(face_ids)
        generated = new_person_id is None
        old, new = await self._storage.split_person(
            collection, person_id, ids, new_person_id or generated_person_id(), generated
        )
        return SplitResult(old, new)

    async def reject_face(self, collection: str, person_id: str, face_id: str) -> PersonRecord:
        """ "Not this person": the face leaves the person, and never comes back to it."""
        return await self._storage.reject_face(collection, person_id, face_id)

    async def person_faces(
        self,
        collection: str,
        person_id: str,
        limit: int = params.DEFAULT_PAGE,
        cursor: str | None = None,
    ) -> tuple[list[FaceRecord], str | None]:
        limit = params.count("limit", limit, params.MAX_PAGE)
        return await self._storage.person_faces(collection, person_id, limit, cursor)

    async def collection_stats(self, collection: str) -> CollectionStats:
        return await self._storage.collection_stats(collection)

    async def service_stats(self) -> ServiceStats:
        """Stats of every collection (one listed but deleted meanwhile is left out)."""
        names = [c.name for c in await self._storage.list_collections()]
        found = await asyncio.gather(
            *(self._storage.collection_stats(n) for n in names), return_exceptions=True
        )
        return ServiceStats(
            {n: s for n, s in zip(names, found, strict=True) if isinstance(s, CollectionStats)}
        )

    async def settings(self, collection: str) -> PeopleSettings:
        return await self._storage.people_settings(collection)

    async def change_settings(
        self,
        collection: str,
        match_history: bool | None = None,
        history_retention_days: int | None = None,
    ) -> PeopleSettings:
        return await self._storage.set_people_settings(
            collection, match_history, history_retention_days
        )
