"""The interface every vector backend implements.

Each method gets the caller's open connection: a backend that lives in PostgreSQL writes in
the caller's transaction, so face rows and their vectors commit (or roll back) together.
Similarities are cosine similarities in [-1, 1]; calibration to percentages happens above.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
from sqlalchemy import Connection

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
        """Up to `k` (face_id, cosine similarity) at or above `min_cosine`, most similar first."""

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
