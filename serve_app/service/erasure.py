"""Erasure of a person in one call: the store deletes every trace (its `ERASURE_STEPS`);
this is the operation the edges (REST, CLI) call and the receipt they answer with."""

from __future__ import annotations

from dataclasses import dataclass

from serve_app.service.context import CollectionContext


@dataclass(frozen=True)
class ErasureReceipt:
    collection: str
    erased: dict[str, int]

    @property
    def already_erased(self) -> bool:
        return not any(self.erased.values())


class ErasureService:
    def __init__(self, context: CollectionContext) -> None:
        self.context = context

    async def erase_person(self, collection: str, person_id: str) -> ErasureReceipt:
        """Delete the person, their faces, vectors, photos and every record naming them;
        idempotent (NotFound only for an unknown collection)."""
        counts = await self.context.storage.erase_person(collection, person_id)
        return ErasureReceipt(collection, dict(counts))
