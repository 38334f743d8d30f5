"""`Store`: collections, images, faces and their vectors in PostgreSQL, one short transaction
per call. The only object the service layer talks to for storage.

A vector backend outside PostgreSQL (Pinecone) is written metadata-first: the transaction
records its vectors as pending, and `after_commit` sends them once it has committed. The
repair API (`storage_problems`, `repair_storage`, `repair_all`, in `repair.py`) finds and
recreates what is missing of a collection's storage and sends what a crash left pending.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, func, select, text
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from serve_app.errors import AlreadyExists, InvalidParameter, NotFound
from serve_app.store import validation as check
from serve_app.store.access import CollectionAccess, collection_record, count_faces_and_persons
from serve_app.store.cluster_runs import ClusterRunStorage
from serve_app.store.collection_schema import (
    create_collection_schema,
    drop_collection_schema,
    schema_name_for,
    tables_for,
)
from serve_app.store.control import collections
from serve_app.store.database import create_engine_for
from serve_app.store.erasure import erase
from serve_app.store.faces import (
    face_record,
    faces_by_id,
    faces_query,
    insert_faces,
    remove_faces,
)
from serve_app.store.history import HistoryStorage
from serve_app.store.people import PeopleStorage
from serve_app.store.people_facade import PeopleMethods
from serve_app.store.persons import PersonStorage
from serve_app.store.records import (
    CollectionRecord,
    FaceRecord,
    NewFace,
    NewImage,
    PersonFacesChange,
    PersonRecord,
)
from serve_app.store.repair import StorageRepair
from serve_app.store.vectors import PgVectorIndex, VectorIndex
from serve_app.store.versions import migrate

MAX_PAGE = 4096
MAX_K = 4096
_UNIQUE_VIOLATION = "23505"


class Store(PeopleMethods):
    """Collections, faces and persons in PostgreSQL, vectors in the configured `VectorIndex`.

    Collections and faces are handled here; persons by a `PersonStorage` and the repair API
    by a `StorageRepair`, both given the same `CollectionAccess` (engine, indexes, lookups)."""

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
        indexes: dict[str, VectorIndex] = {"pgvector": PgVectorIndex()}
        for index in [*vector_indexes, *([vector_index] if vector_index else [])]:
            indexes[index.name] = index
        for index in indexes.values():
            index.attach(engine)
        self._access = CollectionAccess(engine, indexes)
        self._indexes = self._access.indexes
        self._persons = PersonStorage(self._access)
        self._repair = StorageRepair(self._access)
        self._people = PeopleStorage(self._access)
        self._runs = ClusterRunStorage(self._access)
        self._history = HistoryStorage(self._access)

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
        }
        created_outside = False  # whether index.create made something only the commit keeps
        try:
            with self.engine.begin() as conn:
                # The unique name is claimed first: a racing create waits here, then fails.
                created_at = conn.execute(
                    collections.insert().values(**values).returning(collections.c.created_at)
                ).scalar_one()
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
        with self._access.reading() as conn:
            return self._access.collection(conn, name, counted=counted)

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
                row.schema_name: count_faces_and_persons(conn, row.schema_name)
                for row in rows
                if row.schema_name in present
            }
            return [collection_record(row, *counts.get(row.schema_name, (0, 0))) for row in rows]

    def delete_collection(self, name: str) -> None:
        """Drop the collection's schema (faces, vectors, ...) and its control row, atomically.

        An index outside PostgreSQL is deleted last before the commit: if that fails, nothing
        is deleted; if the commit then fails, `repair_storage` recreates and refills it."""
        with self.engine.begin() as conn:
            collection = self._access.collection(conn, name, lock="update")
            drop_collection_schema(conn, collection.schema_name)
            conn.execute(collections.delete().where(collections.c.id == collection.id))
            self._access.index(collection).drop(conn, collection)

    def warm_vector_indexes(
        self, names: Sequence[str] | None = None, wait_s: float = 0.0
    ) -> dict[str, str]:
        """Start loading what the collections' backends keep in memory (a Search replica's
        local indexes of large pgvector collections), all collections unless `names`; wait
        up to `wait_s` for them. Returns each collection's state (cold, warming, ready, over
        memory cap); collections whose backend keeps nothing are left out."""
        with self._access.reading() as conn:
            records = (
                [self._access.collection(conn, name) for name in names]
                if names
                else [
                    collection_record(row, None, None)
                    for row in conn.execute(select(collections).order_by(collections.c.name))
                ]
            )
            states = {
                record.name: self._access.index(record).warm(conn, record)
                for record in records
                if record.vector_backend in self._indexes
            }
        deadline = time.monotonic() + wait_s
        while any(state == "warming" for state in states.values()) and time.monotonic() < deadline:
            time.sleep(0.05)
            with self._access.reading() as conn:
                states = {
                    record.name: self._access.index(record).warm(conn, record)
                    for record in records
                    if record.name in states
                }
        return {name: state for name, state in states.items() if state is not None}

    def count_faces(self, collection_name: str) -> int:
        with self._access.reading() as conn:
            collection = self._access.collection(conn, collection_name)
            return _count_faces(conn, collection.schema_name)

    # -- faces ----------------------------------------------------------------------------

    def add_faces(
        self, collection_name: str, image: NewImage, faces: Sequence[NewFace]
    ) -> list[FaceRecord]:
        """Index the faces of one image: image row, face rows and vectors, all or nothing."""
        check.collection_name(collection_name)
        if len(faces) == 0:
            self._check_image(image)
            return []
        with self.engine.begin() as conn:
            collection = self._access.collection(conn, collection_name, lock="key_share")
            added = self.insert_image(conn, collection, image, faces)
        self._access.after_commit(collection)
        return added  # type: ignore[return-value]

    @staticmethod
    def _check_image(image: NewImage) -> str | None:
        external_image_id = check.short_text(
            "external_image_id", image.external_image_id, required=False
        )
        check.positive_int("image width", image.width, maximum=2**31 - 1)
        check.positive_int("image height", image.height, maximum=2**31 - 1)
        check.short_text("content_hash", image.content_hash, required=False)
        return external_image_id

    def insert_image(
        self,
        conn: Connection,
        collection: CollectionRecord,
        image: NewImage,
        faces: Sequence[NewFace],
        *,
        read_back: bool = True,
    ) -> list[FaceRecord] | list[str]:
        """Within the caller's transaction (the collection held with key_share or more):
        the image row, its face rows and vectors. An image with no faces still gets its row
        (album jobs record that it was seen). The caller runs `after_commit` afterwards.
        Returns the new faces' records, or only their ids without `read_back`."""
        external_image_id = self._check_image(image)
        if len(faces) > MAX_PAGE:
            raise InvalidParameter(f"at most {MAX_PAGE} faces per image, got {len(faces)}")
        face_ids = insert_faces(
            conn, self._access.index(collection), collection, image, external_image_id, faces
        )
        return faces_by_id(conn, collection, face_ids) if read_back else face_ids

    def after_commit(self, collection: CollectionRecord) -> None:
        """What a write to `collection` sends once committed (Pinecone's pending vectors)."""
        self._access.after_commit(collection)

    @property
    def access(self) -> CollectionAccess:
        """How the store's parts reach a collection (for the job store)."""
        return self._access

    def list_faces(
        self, collection_name: str, limit: int = 100, cursor: str | None = None
    ) -> tuple[list[FaceRecord], str | None]:
        """A page of faces in indexing order, and the cursor of the next page (None at the end)."""
        limit = check.positive_int("limit", limit, maximum=MAX_PAGE)
        after = -1 if cursor is None else check.decode_cursor(cursor)
        with self._access.reading() as conn:
            collection = self._access.collection(conn, collection_name)
            t = tables_for(collection.schema_name)
            rows = conn.execute(
                faces_query(t).where(t.faces.c.seq > after).order_by(t.faces.c.seq).limit(limit + 1)
            ).all()
        page = rows[:limit]
        next_cursor = check.encode_cursor(page[-1].seq) if len(rows) > limit else None
        return [face_record(row) for row in page], next_cursor

    def get_faces(self, collection_name: str, face_ids: Sequence[str]) -> list[FaceRecord]:
        """The faces with these ids, in the order asked; unknown ids are left out."""
        ids = check.face_ids(face_ids)
        with self._access.reading() as conn:
            collection = self._access.collection(conn, collection_name)
            return faces_by_id(conn, collection, ids)

    def get_embedding(self, collection_name: str, face_id: str) -> np.ndarray:
        """The stored embedding of one face (float32); NotFound if the face is not there."""
        fid = check.face_id(face_id)
        with self._access.reading() as conn:
            collection = self._access.collection(conn, collection_name)
            vector = self._access.index(collection).get(conn, collection, fid)
        if vector is None:
            raise NotFound(f"face {fid} not found in collection {collection_name!r}")
        return vector

    def delete_faces(self, collection_name: str, face_ids: Sequence[str]) -> list[str]:
        """Delete faces (and images left without faces); returns the ids that were deleted."""
        ids = check.face_ids(face_ids)
        if not ids:
            return []
        with self.engine.begin() as conn:
            collection = self._access.collection(conn, collection_name, lock="key_share")
            deleted = remove_faces(conn, self._access.index(collection), collection, ids)
        if deleted:
            self._access.after_commit(collection)
        return deleted

    def search(
        self, collection_name: str, vector: np.ndarray, k: int, min_cosine: float
    ) -> list[tuple[FaceRecord, float]]:
        """The `k` faces nearest to `vector` with cosine similarity >= min_cosine, best first."""
        k = check.positive_int("k", k, maximum=MAX_K)
        min_cos = check.cosine(min_cosine)
        with self._access.reading() as conn:
            collection = self._access.collection(conn, collection_name)
            query = check.embedding(vector, collection.embedding_dim, collection_name)
            hits = self._access.index(collection).search(conn, collection, query, k, min_cos)
            records = {r.face_id: r for r in faces_by_id(conn, collection, [h[0] for h in hits])}
        # A backend's own copy may still hold a face just deleted: it is not in `records`
        # (and such a backend returns a few more than k for it).
        found = [(records[face_id], score) for face_id, score in hits if face_id in records]
        return found[:k]

    def vector_stats(self, collection_name: str) -> dict[str, Any]:
        """Facts about a collection's vectors: how many, and for Pinecone the index, its own
        count and what is still pending."""
        with self._access.reading() as conn:
            collection = self._access.collection(conn, collection_name)
            return self._access.index(collection).stats(conn, collection)

    # -- persons (see PersonStorage) ------------------------------------------------------

    def create_person(
        self,
        collection_name: str,
        person_id: str,
        metadata: dict[str, Any] | None = None,
        request_token: str | None = None,
    ) -> PersonRecord:
        """A new person without faces (`PersonStorage.create_person`)."""
        return self._persons.create_person(collection_name, person_id, metadata, request_token)

    def get_person(self, collection_name: str, person_id: str) -> PersonRecord:
        """The person with its face count (`PersonStorage.get_person`)."""
        return self._persons.get_person(collection_name, person_id)

    def list_persons(
        self, collection_name: str, limit: int = 100, cursor: str | None = None
    ) -> tuple[list[PersonRecord], str | None]:
        """A page of persons by id (`PersonStorage.list_persons`)."""
        return self._persons.list_persons(collection_name, limit, cursor)

    def delete_person(
        self,
        collection_name: str,
        person_id: str,
        delete_faces: bool = False,
        request_token: str | None = None,
    ) -> list[str]:
        """Delete a person, and its faces if asked (`PersonStorage.delete_person`)."""
        return self._persons.delete_person(collection_name, person_id, delete_faces, request_token)

    def associate_faces(
        self,
        collection_name: str,
        person_id: str,
        face_ids: Sequence[str],
        min_cosine: float,
        max_faces: int,
        request_token: str | None = None,
    ) -> PersonFacesChange:
        """Make faces the person's (`PersonStorage.associate_faces`)."""
        return self._persons.associate_faces(
            collection_name, person_id, face_ids, min_cosine, max_faces, request_token
        )

    def disassociate_faces(
        self,
        collection_name: str,
        person_id: str,
        face_ids: Sequence[str],
        request_token: str | None = None,
    ) -> PersonFacesChange:
        """Make faces belong to nobody (`PersonStorage.disassociate_faces`)."""
        return self._persons.disassociate_faces(collection_name, person_id, face_ids, request_token)

    def merge_persons(
        self, collection_name: str, into: str, other: str, max_faces: int
    ) -> PersonRecord:
        """Move `other`'s faces to `into` and delete `other` (`PersonStorage.merge_persons`)."""
        return self._persons.merge_persons(collection_name, into, other, max_faces)

    def search_persons(
        self,
        collection_name: str,
        vectors: np.ndarray,
        k: int,
        min_cosine: float,
        exclude_person: str | None = None,
        exclude_face: str | None = None,
    ) -> list[tuple[PersonRecord, float]]:
        """The `k` persons with the nearest faces (`PersonStorage.search_persons`)."""
        return self._persons.search_persons(
            collection_name, vectors, k, min_cosine, exclude_person, exclude_face
        )

    def person_embeddings(self, collection_name: str, person_id: str) -> np.ndarray:
        """The embeddings of the person's faces (`PersonStorage.person_embeddings`)."""
        return self._persons.person_embeddings(collection_name, person_id)

    def erase_person(self, collection_name: str, person_id: str) -> dict[str, int]:
        """Delete every trace of a person (`erasure.ERASURE_STEPS`) in one transaction; the
        counts by kind. Idempotent: a second call finds nothing and counts zeros."""
        pid = check.person_id(person_id)
        with self._access.writing(collection_name) as (conn, collection, t):
            counts = erase(conn, collection, t, self._access.index(collection), pid)
        if counts["faces"]:
            self._access.after_commit(collection)
        return counts

    # -- repair (see StorageRepair) -------------------------------------------------------

    def storage_problems(self, name: str) -> list[str]:
        """What is missing of the collection's storage (`StorageRepair.storage_problems`)."""
        return self._repair.storage_problems(name)

    def repair_storage(self, name: str, *, full: bool = True) -> list[str]:
        """Recreate what is missing of the collection's storage (`StorageRepair.repair_storage`)."""
        return self._repair.repair_storage(name, full=full)

    def repair_all(self) -> dict[str, list[str]]:
        """`repair_storage` for every collection (`StorageRepair.repair_all`)."""
        return self._repair.repair_all()


def _count_faces(conn: Connection, schema_name: str) -> int:
    faces = tables_for(schema_name).faces
    return int(conn.execute(select(func.count()).select_from(faces)).scalar_one())
