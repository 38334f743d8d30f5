"""How the store reaches a collection: a transaction, the collection's control row under the
lock the caller needs, and the vector index it uses.

Shared by the store's parts (`Store` itself, `PersonStorage`, `StorageRepair`): each is
given one `CollectionAccess` and needs nothing else of the others.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal

from sqlalchemy import Connection, Engine, Row, func, select
from sqlalchemy.exc import DBAPIError

from serve_app.errors import InvalidParameter, NotFound
from serve_app.store import validation as check
from serve_app.store.collection_schema import CollectionTables, quoted_schema, tables_for
from serve_app.store.control import collections
from serve_app.store.records import CollectionRecord
from serve_app.store.vectors import VectorIndex

# SQLSTATEs of a table or schema that vanished under us: the collection was just deleted.
GONE = {"42P01", "3F000"}
Lock = Literal["key_share", "update"] | None


class CollectionAccess:
    """The engine and the configured vector indexes, by backend name."""

    def __init__(self, engine: Engine, indexes: Mapping[str, VectorIndex]) -> None:
        self.engine = engine
        self.indexes = dict(indexes)

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A read transaction; a collection dropped mid-way reads as NotFound, not a 500."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except DBAPIError as err:
            if getattr(err.orig, "pgcode", None) in GONE:
                raise NotFound("the collection was deleted") from None
            raise

    @contextmanager
    def writing(
        self, collection_name: str
    ) -> Iterator[tuple[Connection, CollectionRecord, CollectionTables]]:
        """A write transaction in a collection that cannot be deleted until it commits."""
        with self.engine.begin() as conn:
            collection = self.collection(conn, collection_name, lock="key_share")
            yield conn, collection, tables_for(collection.schema_name)

    def collection(
        self, conn: Connection, name: str, *, lock: Lock = None, counted: bool = False
    ) -> CollectionRecord:
        """The collection's record; NotFound without one. `lock="key_share"` holds off
        `delete_collection` until the transaction ends, `"update"` also other writers;
        `counted` adds its face and person counts."""
        check.collection_name(name)
        query = select(collections).where(collections.c.name == name)
        if lock == "key_share":
            query = query.with_for_update(key_share=True)
        elif lock == "update":
            query = query.with_for_update()
        row = conn.execute(query).one_or_none()
        if row is None:
            raise NotFound(f"collection {name!r} not found")
        if counted:
            return collection_record(row, *count_faces_and_persons(conn, row.schema_name))
        return collection_record(row, None, None)

    def index(self, collection: CollectionRecord) -> VectorIndex:
        """The vector index the collection uses; InvalidParameter if it is not configured."""
        index = self.indexes.get(collection.vector_backend)
        if index is None:
            raise InvalidParameter(
                f"collection {collection.name!r} uses vector backend "
                f"{collection.vector_backend!r}, which is not configured here"
            )
        return index

    def after_commit(self, collection: CollectionRecord) -> None:
        """Let the collection's backend send what the committed transaction left pending."""
        self.index(collection).after_commit(self.engine, collection)


def count_faces_and_persons(conn: Connection, schema_name: str) -> tuple[int, int]:
    """How many faces and persons the collection holds."""
    t = tables_for(schema_name)
    faces = select(func.count()).select_from(t.faces).scalar_subquery()
    persons = select(func.count()).select_from(t.persons).scalar_subquery()
    row = conn.execute(select(faces, persons)).one()
    return int(row[0]), int(row[1])


def collection_record(
    row: Row[Any], face_count: int | None, person_count: int | None
) -> CollectionRecord:
    """A control row as a record (one we did not write is refused here)."""
    quoted_schema(row.schema_name)
    return CollectionRecord(
        id=str(row.id),
        name=row.name,
        schema_name=row.schema_name,
        model_version=row.model_version,
        embedding_dim=row.embedding_dim,
        vector_backend=row.vector_backend,
        metadata=dict(row.metadata),
        created_at=row.created_at,
        face_count=face_count,
        person_count=person_count,
        vector_options=dict(row.vector_options),
    )
