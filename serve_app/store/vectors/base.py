"""The interface every vector backend implements.

Each method gets the caller's open connection: a backend that lives in PostgreSQL writes in
the caller's transaction, so face rows and their vectors commit (or roll back) together.
A backend that lives elsewhere (Pinecone) records its writes in that transaction as pending
and sends them in `after_commit`; `repair` finishes whatever a crash left pending.
Similarities are cosine similarities in [-1, 1]; calibration to percentages happens above.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, Table, select

from serve_app.errors import InvalidParameter
from serve_app.store.records import CollectionRecord


class VectorIndex(ABC):
    """Stores one embedding per face id, per collection, and finds the nearest ones."""

    #: the `vector_backend` value of the collections this index serves
    name: str

    #: the largest embedding dimension this backend can index
    max_dim: int

    @abstractmethod
    def create(self, conn: Connection, collection: CollectionRecord) -> None:
        """Create the (empty) index of a new collection."""

    @abstractmethod
    def drop(self, conn: Connection, collection: CollectionRecord) -> None:
        """Remove the collection's index and every vector in it."""

    @abstractmethod
    def add(
        self,
        conn: Connection,
        collection: CollectionRecord,
        face_ids: Sequence[str],
        vectors: np.ndarray,
    ) -> None:
        """Store `vectors[i]` (float32, shape (n, dim)) for `face_ids[i]`."""

    @abstractmethod
    def delete(
        self, conn: Connection, collection: CollectionRecord, face_ids: Sequence[str]
    ) -> None:
        """Remove the vectors of these faces (unknown ids are ignored)."""

    @abstractmethod
    def get(
        self, conn: Connection, collection: CollectionRecord, face_id: str
    ) -> np.ndarray | None:
        """The stored vector of one face, or None."""

    def get_many(
        self, conn: Connection, collection: CollectionRecord, face_ids: Sequence[str]
    ) -> dict[str, np.ndarray]:
        """The stored vectors of these faces, by face id (unknown ids are left out)."""
        found = {face_id: self.get(conn, collection, face_id) for face_id in face_ids}
        return {face_id: vector for face_id, vector in found.items() if vector is not None}

    @abstractmethod
    def search(
        self,
        conn: Connection,
        collection: CollectionRecord,
        vector: np.ndarray,
        k: int,
        min_cosine: float,
    ) -> list[tuple[str, float]]:
        """Up to `k` (face_id, cosine similarity) at or above `min_cosine`, most similar first.
        A backend whose copy may lag behind deletions returns a few more: the store keeps
        the first `k` faces that exist."""

    @abstractmethod
    def search_persons(
        self,
        conn: Connection,
        collection: CollectionRecord,
        vector: np.ndarray,
        k: int,
        min_cosine: float,
        exclude_person: str | None = None,
        exclude_face: str | None = None,
    ) -> list[tuple[str, float]]:
        """Up to `k` (person row id, best cosine similarity of its faces) at or above
        `min_cosine`, most similar first. Only faces that belong to a person count (the
        collection's `faces.person_id`), less those of `exclude_person` and `exclude_face`."""

    @abstractmethod
    def count(self, conn: Connection, collection: CollectionRecord) -> int:
        """How many vectors the collection holds."""

    # -- hooks with defaults for a backend that lives in the caller's transaction ----------

    def resolve_options(
        self, options: Mapping[str, Any] | None, collection_id: str
    ) -> dict[str, Any]:
        """Check a new collection's `vector_options` and return them complete (defaults
        filled in), to be stored with the collection and pinned for its life;
        InvalidParameter if they are wrong."""
        if options:
            raise InvalidParameter(
                f"vector backend {self.name!r} takes no vector options, "
                f"got {', '.join(sorted(map(str, options)))}"
            )
        return {}

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Release what the backend holds (connections to an external service)."""

    def attach(self, engine: Engine) -> None:  # noqa: B027 (optional hook)
        """Called once by the store that uses this backend, with its engine (a backend that
        keeps state of its own beside PostgreSQL reads it through that engine)."""

    def warm(self, conn: Connection, collection: CollectionRecord) -> str | None:
        """Start loading what the backend keeps in memory for this collection; returns the
        state of that copy (None: the backend keeps nothing)."""
        return None

    def after_commit(self, engine: Engine, collection: CollectionRecord) -> None:  # noqa: B027 (optional hook)
        """Called after a transaction that added or deleted vectors has committed. Never
        raises: what it cannot do stays pending for `repair`."""

    def discard(self, collection: CollectionRecord) -> None:  # noqa: B027 (optional hook)
        """Undo, best effort, what `create` did outside PostgreSQL when the creating
        transaction failed to commit. Never raises."""

    def storage_problems(self, conn: Connection, collection: CollectionRecord) -> list[str]:
        """What is missing or stuck of the collection's vector storage, in words."""
        return []

    def ensure_storage(self, conn: Connection, collection: CollectionRecord) -> list[str]:
        """Recreate whatever is missing of the collection's vector storage, in the caller's
        transaction (which holds the collection against deletion); returns what was done."""
        return []

    def repair(
        self, engine: Engine, collection: CollectionRecord, *, full: bool = True
    ) -> list[str]:
        """After `ensure_storage` committed: push what is pending and remove what should not
        be there. `full` also scans the whole index for orphans; without it, a backend may
        scan only when something looks off. Returns what was done; idempotent."""
        return []

    def stats(self, conn: Connection, collection: CollectionRecord) -> dict[str, Any]:
        """Facts about the collection's vectors, for operators (at least `vectors`)."""
        return {"backend": self.name, "vectors": self.count(conn, collection)}


def read_vectors(conn: Connection, table: Table, face_ids: Sequence[str]) -> dict[str, np.ndarray]:
    """Rows of a `(face_id, embedding)` table for these faces, as float32 arrays by face id."""
    if len(face_ids) == 0:
        return {}
    rows = conn.execute(
        select(table.c.face_id, table.c.embedding).where(table.c.face_id.in_(list(face_ids)))
    ).all()
    return {str(face_id): np.asarray(vector, dtype=np.float32) for face_id, vector in rows}
