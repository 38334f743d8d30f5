"""`Store`: collections, images, faces and their vectors in PostgreSQL, one short transaction
per call. The only object the service layer talks to for storage.

A vector backend outside PostgreSQL (Pinecone) is written metadata-first: the transaction
records its vectors as pending, and `after_commit` sends them once it has committed. The
repair API (`storage_problems`, `repair_storage`, `repair_all`, in `repair.py`) finds and
recreates what is missing of a collection's storage and sends what a crash left pending.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, Row, Select, func, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

from serve_app.errors import AlreadyExists, InvalidParameter, NotFound
from serve_app.store import validation as check
from serve_app.store.collection_schema import (
    SCHEMA_VERSION,
    CollectionTables,
    create_collection_schema,
    drop_collection_schema,
    quoted_schema,
    schema_name_for,
    tables_for,
)
from serve_app.store.control import collections
from serve_app.store.database import create_engine_for, migrate
from serve_app.store.persons import PersonStorage
from serve_app.store.records import CollectionRecord, FaceRecord, NewFace, NewImage
from serve_app.store.repair import StorageRepair
from serve_app.store.vectors import PgVectorIndex, VectorIndex

MAX_PAGE = 4096
MAX_K = 4096
# SQLSTATEs of a table or schema that vanished under us: the collection was just deleted.
_GONE = {"42P01", "3F000"}
_UNIQUE_VIOLATION = "23505"


class Store(PersonStorage, StorageRepair):
    """Collections, faces and persons in PostgreSQL, vectors in the configured `VectorIndex`."""

    def __init__(
        self,
        engine: Engine,
        vector_index: VectorIndex | None = None,
        *,
        vector_indexes: Sequence[VectorIndex] = (),
    ) -> None:
        """`vector_indexes`: the backends collections may use (pgvector is always there);
        `vector_index`, the older spelling, adds one more."""
        self.engine = engine
        self._indexes: dict[str, VectorIndex] = {"pgvector": PgVectorIndex()}
        for index in [*vector_indexes, *([vector_index] if vector_index else [])]:
            self._indexes[index.name] = index

    @classmethod
    def open(
        cls,
        url: str,
        vector_index: VectorIndex | None = None,
        *,
        vector_indexes: Sequence[VectorIndex] = (),
    ) -> Store:
        """Connect to `url` and migrate the database to the current schema."""
        engine = create_engine_for(url)
        migrate(engine)
        return cls(engine, vector_index, vector_indexes=vector_indexes)

    @property
    def vector_backends(self) -> list[str]:
        """The vector backends collections of this store may use."""
        return sorted(self._indexes)

    def close(self) -> None:
        for index in self._indexes.values():
            index.close()
        self.engine.dispose()

    def ping(self) -> bool:
        """Whether the database answers (for readiness probes)."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except SQLAlchemyError:
            return False

    # -- collections ----------------------------------------------------------------------

    def create_collection(
        self,
        name: str,
        model_version: str,
        embedding_dim: int,
        vector_backend: str = "pgvector",
        metadata: dict[str, Any] | None = None,
        vector_options: Mapping[str, Any] | None = None,
    ) -> CollectionRecord:
        """Create a collection and its schema together; AlreadyExists if the name is taken.

        `vector_options` configure the backend for this collection (Pinecone: `cloud`,
        `region`); they are checked, completed with defaults and kept with the collection."""
        check.collection_name(name)
        check.short_text("model_version", model_version, required=True)
        index = self._indexes.get(vector_backend)
        if index is None:
            raise InvalidParameter(
                f"vector backend {vector_backend!r} is not configured "
                f"(available: {', '.join(sorted(self._indexes))})"
            )
        dim = check.positive_int("embedding_dim", embedding_dim, maximum=index.max_dim)
        meta = check.json_object("metadata", metadata)
        if vector_options is not None and not isinstance(vector_options, Mapping):
            raise InvalidParameter("vector_options must be a JSON object")
        collection_id = uuid.uuid4()
        options = index.resolve_options(vector_options, str(collection_id))
        values = {
            "id": str(collection_id),
            "name": name,
            "schema_name": schema_name_for(collection_id),
            "model_version": model_version,
            "embedding_dim": dim,
            "vector_backend": vector_backend,
            "metadata": meta,
            "vector_options": options,
            "schema_version": SCHEMA_VERSION,
        }
        created_outside = False  # whether index.create made something only the commit keeps
        try:
            with self.engine.begin() as conn:
                # The unique name is claimed first: a racing create waits here, then fails.
                created_at = conn.execute(
                    collections.insert().values(**values).returning(collections.c.created_at)
                ).scalar_one()
                values.pop("schema_version")
                record = CollectionRecord(
                    **values, created_at=created_at, face_count=0, person_count=0
                )
                create_collection_schema(conn, record.schema_name)
                index.create(conn, record)
                created_outside = True
        except IntegrityError as err:
            if getattr(err.orig, "pgcode", None) == _UNIQUE_VIOLATION:
                raise AlreadyExists(f"collection {name!r} already exists") from None
            raise
        except BaseException:
            if created_outside:  # the commit failed after the backend made its index
                index.discard(record)
            raise
        return record

    def get_collection(self, name: str, *, counted: bool = True) -> CollectionRecord:
        """The collection, with its face and person counts unless `counted=False` (which reads
        only the control row, so works even when the collection's schema is damaged);
        NotFound if there is none."""
        with self._reading() as conn:
            return self._collection(conn, name, counted=counted)

    def list_collections(self) -> list[CollectionRecord]:
        """Every collection, by name, with face counts."""
        with self.engine.begin() as conn:
            # KEY SHARE: a concurrent delete waits until we have counted its faces.
            rows = conn.execute(
                select(collections).order_by(collections.c.name).with_for_update(key_share=True)
            ).all()
            # A schema dropped behind our back (repaired by `repair_storage` or the operator)
            # holds no faces: list it as empty rather than fail the whole listing.
            present = set(
                conn.execute(
                    text("SELECT nspname FROM pg_namespace WHERE nspname = ANY(:names)"),
                    {"names": [row.schema_name for row in rows]},
                ).scalars()
            )
            counts = {
                row.schema_name: self._counts(conn, row.schema_name)
                for row in rows
                if row.schema_name in present
            }
            return [_collection_record(row, *counts.get(row.schema_name, (0, 0))) for row in rows]

    def delete_collection(self, name: str) -> None:
        """Drop the collection's schema (faces, vectors, ...) and its control row, atomically.

        An index outside PostgreSQL is deleted last before the commit: if that fails, nothing
        is deleted; if the commit then fails, `repair_storage` recreates and refills it."""
        with self.engine.begin() as conn:
            collection = self._collection(conn, name, lock="update")
            drop_collection_schema(conn, collection.schema_name)
            conn.execute(collections.delete().where(collections.c.id == collection.id))
            self._index(collection).drop(conn, collection)

    def count_faces(self, collection_name: str) -> int:
        with self._reading() as conn:
            collection = self._collection(conn, collection_name)
            return self._count(conn, collection.schema_name)

    # -- faces ----------------------------------------------------------------------------

    def add_faces(
        self, collection_name: str, image: NewImage, faces: Sequence[NewFace]
    ) -> list[FaceRecord]:
        """Index the faces of one image: image row, face rows and vectors, all or nothing."""
        check.collection_name(collection_name)
        external_image_id = check.short_text(
            "external_image_id", image.external_image_id, required=False
        )
        width = check.positive_int("image width", image.width, maximum=2**31 - 1)
        height = check.positive_int("image height", image.height, maximum=2**31 - 1)
        if len(faces) == 0:
            return []
        if len(faces) > MAX_PAGE:
            raise InvalidParameter(f"at most {MAX_PAGE} faces per image, got {len(faces)}")
        with self.engine.begin() as conn:
            collection = self._collection(conn, collection_name, lock="key_share")
            vectors = np.stack(
                [
                    check.embedding(f.embedding, collection.embedding_dim, collection_name)
                    for f in faces
                ]
            )
            image_id = str(uuid.uuid4())
            face_rows = [_face_row(face, image_id, external_image_id) for face in faces]
            t = tables_for(collection.schema_name)
            conn.execute(
                t.images.insert().values(
                    id=image_id,
                    external_image_id=external_image_id,
                    width=width,
                    height=height,
                    data=image.data,
                )
            )
            conn.execute(t.faces.insert(), face_rows)
            face_ids = [row["id"] for row in face_rows]
            self._index(collection).add(conn, collection, face_ids, vectors)
            added = self._faces_by_id(conn, collection, face_ids)
        self._after_commit(collection)
        return added

    def list_faces(
        self, collection_name: str, limit: int = 100, cursor: str | None = None
    ) -> tuple[list[FaceRecord], str | None]:
        """A page of faces in indexing order, and the cursor of the next page (None at the end)."""
        limit = check.positive_int("limit", limit, maximum=MAX_PAGE)
        after = -1 if cursor is None else check.decode_cursor(cursor)
        with self._reading() as conn:
            collection = self._collection(conn, collection_name)
            t = tables_for(collection.schema_name)
            rows = conn.execute(
                _faces_query(t)
                .where(t.faces.c.seq > after)
                .order_by(t.faces.c.seq)
                .limit(limit + 1)
            ).all()
        page = rows[:limit]
        next_cursor = check.encode_cursor(page[-1].seq) if len(rows) > limit else None
        return [_face_record(row) for row in page], next_cursor

    def get_faces(self, collection_name: str, face_ids: Sequence[str]) -> list[FaceRecord]:
        """The faces with these ids, in the order asked; unknown ids are left out."""
        ids = check.face_ids(face_ids)
        with self._reading() as conn:
            collection = self._collection(conn, collection_name)
            return self._faces_by_id(conn, collection, ids)

    def get_embedding(self, collection_name: str, face_id: str) -> np.ndarray:
        """The stored embedding of one face (float32); NotFound if the face is not there."""
        fid = check.face_id(face_id)
        with self._reading() as conn:
            collection = self._collection(conn, collection_name)
            vector = self._index(collection).get(conn, collection, fid)
        if vector is None:
            raise NotFound(f"face {fid} not found in collection {collection_name!r}")
        return vector

    def delete_faces(self, collection_name: str, face_ids: Sequence[str]) -> list[str]:
        """Delete faces (and images left without faces); returns the ids that were deleted."""
        ids = check.face_ids(face_ids)
        if not ids:
            return []
        with self.engine.begin() as conn:
            collection = self._collection(conn, collection_name, lock="key_share")
            deleted = self._delete_faces(conn, collection, ids)
        if deleted:
            self._after_commit(collection)
        return deleted

    def search(
        self, collection_name: str, vector: np.ndarray, k: int, min_cosine: float
    ) -> list[tuple[FaceRecord, float]]:
        """The `k` faces nearest to `vector` with cosine similarity >= min_cosine, best first."""
        k = check.positive_int("k", k, maximum=MAX_K)
        min_cos = check.cosine(min_cosine)
        with self._reading() as conn:
            collection = self._collection(conn, collection_name)
            query = check.embedding(vector, collection.embedding_dim, collection_name)
            hits = self._index(collection).search(conn, collection, query, k, min_cos)
            records = {
                r.face_id: r for r in self._faces_by_id(conn, collection, [h[0] for h in hits])
            }
        return [(records[face_id], score) for face_id, score in hits if face_id in records]

    def vector_stats(self, collection_name: str) -> dict[str, Any]:
        """Facts about a collection's vectors: how many, and for Pinecone the index, its own
        count and what is still pending."""
        with self._reading() as conn:
            collection = self._collection(conn, collection_name)
            return self._index(collection).stats(conn, collection)

    # -- internals ------------------------------------------------------------------------

    def _after_commit(self, collection: CollectionRecord) -> None:
        """Let the collection's backend send what the committed transaction left pending."""
        self._index(collection).after_commit(self.engine, collection)

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        """A read transaction; a collection dropped mid-way reads as NotFound, not a 500."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except DBAPIError as err:
            if getattr(err.orig, "pgcode", None) in _GONE:
                raise NotFound("the collection was deleted") from None
            raise

    def _collection(
        self, conn: Connection, name: str, *, lock: str | None = None, counted: bool = False
    ) -> CollectionRecord:
        check.collection_name(name)
        query = select(collections).where(collections.c.name == name)
        if lock == "key_share":  # holds off delete_collection until we commit
            query = query.with_for_update(key_share=True)
        elif lock == "update":
            query = query.with_for_update()
        row = conn.execute(query).one_or_none()
        if row is None:
            raise NotFound(f"collection {name!r} not found")
        if counted:
            return _collection_record(row, *self._counts(conn, row.schema_name))
        return _collection_record(row, None, None)

    def _index(self, collection: CollectionRecord) -> VectorIndex:
        index = self._indexes.get(collection.vector_backend)
        if index is None:
            raise InvalidParameter(
                f"collection {collection.name!r} uses vector backend "
                f"{collection.vector_backend!r}, which is not configured here"
            )
        return index

    @staticmethod
    def _count(conn: Connection, schema_name: str) -> int:
        faces = tables_for(schema_name).faces
        return int(conn.execute(select(func.count()).select_from(faces)).scalar_one())

    @staticmethod
    def _counts(conn: Connection, schema_name: str) -> tuple[int, int]:
        """How many faces and persons the collection holds."""
        t = tables_for(schema_name)
        faces = select(func.count()).select_from(t.faces).scalar_subquery()
        persons = select(func.count()).select_from(t.persons).scalar_subquery()
        row = conn.execute(select(faces, persons)).one()
        return int(row[0]), int(row[1])

    def _delete_faces(
        self, conn: Connection, collection: CollectionRecord, ids: list[str]
    ) -> list[str]:
        """Delete faces, their vectors and the images left without faces; the ids deleted."""
        if not ids:
            return []
        t = tables_for(collection.schema_name)
        self._index(collection).delete(conn, collection, ids)
        deleted = conn.execute(
            t.faces.delete()
            .where(t.faces.c.id.in_(ids))
            .returning(t.faces.c.id, t.faces.c.image_id)
        ).all()
        image_ids = list({row.image_id for row in deleted})
        if image_ids:
            still_used = select(t.faces.c.id).where(t.faces.c.image_id == t.images.c.id)
            conn.execute(
                t.images.delete().where(t.images.c.id.in_(image_ids), ~still_used.exists())
            )
        gone = {str(row.id) for row in deleted}
        return [i for i in ids if i in gone]

    @staticmethod
    def _faces_by_id(
        conn: Connection, collection: CollectionRecord, face_ids: Sequence[str]
    ) -> list[FaceRecord]:
        if not face_ids:
            return []
        t = tables_for(collection.schema_name)
        rows = conn.execute(_faces_query(t).where(t.faces.c.id.in_(list(face_ids)))).all()
        by_id = {str(row.id): _face_record(row) for row in rows}
        return [by_id[i] for i in face_ids if i in by_id]


def _collection_record(
    row: Row[Any], face_count: int | None, person_count: int | None
) -> CollectionRecord:
    quoted_schema(row.schema_name)  # a control row we did not write is refused here
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


def _face_row(face: NewFace, image_id: str, external_image_id: str | None) -> dict[str, Any]:
    landmarks = face.landmarks
    if isinstance(landmarks, np.ndarray):
        landmarks = landmarks.tolist()
    if not isinstance(landmarks, list | tuple):
        raise InvalidParameter("landmarks must be a list")
    return {
        "id": str(uuid.uuid4()),
        "image_id": image_id,
        "external_image_id": external_image_id,
        "bounding_box": check.json_object("bounding_box", face.bounding_box),
        "landmarks": list(landmarks),
        "confidence": check.confidence(face.confidence),
        "quality": check.json_object("quality", face.quality),
        "metadata": check.json_object("metadata", face.metadata),
    }


def _faces_query(t: CollectionTables) -> Select[Any]:
    """Faces with the client's id of their person (the person's row id stays inside) and the
    size of their image."""
    person = t.persons.c.external_id.label("person_external_id")
    width = t.images.c.width.label("image_width")
    height = t.images.c.height.label("image_height")
    return select(t.faces, person, width, height).select_from(
        t.faces.outerjoin(t.persons, t.faces.c.person_id == t.persons.c.id).join(
            t.images, t.faces.c.image_id == t.images.c.id
        )
    )


def _face_record(row: Row[Any]) -> FaceRecord:
    return FaceRecord(
        face_id=str(row.id),
        image_id=str(row.image_id),
        external_image_id=row.external_image_id,
        bounding_box=row.bounding_box,
        landmarks=row.landmarks,
        confidence=float(row.confidence),
        quality=row.quality,
        metadata=row.metadata,
        person_id=row.person_external_id,
        created_at=row.created_at,
        image_width=row.image_width,
        image_height=row.image_height,
    )
