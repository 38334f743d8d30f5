"""Pinecone: each collection's vectors in its own serverless index, PostgreSQL first.

PostgreSQL stays the source of truth. Each vector is also kept in the collection's schema,
written in the caller's transaction as *pending*; a deleted face leaves a pending deletion
(see `pinecone_sync`). Once that transaction has committed, `after_commit` sends what is
pending to Pinecone. A crash or a Pinecone failure between the two leaves it pending, and
`repair` sends it later: nothing is lost, and nothing stays behind in Pinecone that
PostgreSQL no longer has.

Until its vector has reached Pinecone a face is stored and listed, but not found by a search.
Reads of vectors (`get`, `get_many`) use the PostgreSQL copy: exact, and one round trip less.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, select, text
from sqlalchemy.exc import SQLAlchemyError

from serve_app.errors import FaceserveError, InvalidParameter
from serve_app.store.collection_schema import table_exists, tables_for
from serve_app.store.records import CollectionRecord
from serve_app.store.vectors import pinecone_sync as sync
from serve_app.store.vectors.base import VectorIndex, read_vectors
from serve_app.store.vectors.pinecone_remote import (
    MAX_TOP_K,
    PineconeRemote,
    check_location,
    check_prefix,
)

log = logging.getLogger(__name__)

# A pending write older than this is reported by `storage_problems` (a push failed).
PENDING_GRACE_S = 60
# After a failed push, writes leave pushing to the repair pass for this long, rather than
# each waiting out Pinecone's timeouts and retries.
COOLDOWN_S = 30.0
# A person search aggregates this many nearest faces per wanted person (at least 100).
PERSON_CANDIDATES_PER_RESULT = 10


class PineconeIndex(VectorIndex):
    """Vectors in Pinecone (one serverless cosine index per collection), PostgreSQL first."""

    name = "pinecone"
    max_dim = 20_000  # Pinecone's largest dense dimension

    def __init__(
        self,
        api_key: str,
        host: str = "",
        index_prefix: str = "faceserve",
        cloud: str = "aws",
        region: str = "us-east-1",
        *,
        timeout_s: float = 10.0,
    ) -> None:
        """`host` is the control-plane URL (empty: Pinecone's cloud; an http:// URL for
        Pinecone Local); `cloud`/`region` are the defaults for collections that give none."""
        self.prefix = check_prefix(index_prefix)
        self.cloud, self.region = check_location(cloud, region)
        self.remote = PineconeRemote(api_key, host, timeout_s)
        self._lock = threading.Lock()
        self._cooldown_until: dict[str, float] = {}  # index name -> monotonic time

    def close(self) -> None:
        self.remote.close()

    def index_name(self, collection: CollectionRecord) -> str:
        """The collection's Pinecone index: pinned in its options when it was created."""
        pinned = collection.vector_options.get("index_name")
        return str(pinned) if pinned else f"{self.prefix}-{uuid.UUID(collection.id).hex}"

    # -- lifecycle ------------------------------------------------------------------------

    def resolve_options(
        self, options: Mapping[str, Any] | None, collection_id: str
    ) -> dict[str, Any]:
        options = dict(options or {})
        unknown = sorted(set(options) - {"cloud", "region"})
        if unknown:
            raise InvalidParameter(
                f"unknown Pinecone vector option(s) {', '.join(map(repr, unknown))} "
                "(known: cloud, region)"
            )
        cloud, region = check_location(
            options.get("cloud", self.cloud), options.get("region", self.region)
        )
        # Pinned: a later change of FACESERVE_PINECONE_INDEX_PREFIX leaves this index alone.
        index_name = f"{self.prefix}-{uuid.UUID(collection_id).hex}"
        return {"cloud": cloud, "region": region, "index_name": index_name}

    def create(self, conn: Connection, collection: CollectionRecord) -> None:
        sync.create_tables(conn, collection)
        # Last, so that nothing after it can fail but the commit (see `discard`).
        self._create_index(collection)

    def discard(self, collection: CollectionRecord) -> None:
        try:
            self.remote.delete(self.index_name(collection))
        except FaceserveError as exc:
            log.error("could not remove Pinecone index of uncreated collection: %s", exc.message)

    def drop(self, conn: Connection, collection: CollectionRecord) -> None:
        # Called last in the deleting transaction: if Pinecone refuses, the collection stays.
        self.remote.delete(self.index_name(collection))

    # -- writes: PostgreSQL now, Pinecone after the commit --------------------------------

    def add(
        self,
        conn: Connection,
        collection: CollectionRecord,
        face_ids: Sequence[str],
        vectors: np.ndarray,
    ) -> None:
        if len(face_ids) == 0:
            return
        rows = [
            {"face_id": face_id, "embedding": np.asarray(vector, dtype=np.float32).tolist()}
            for face_id, vector in zip(face_ids, vectors, strict=True)
        ]
        sync.add_pending(conn, collection, rows)

    def delete(
        self, conn: Connection, collection: CollectionRecord, face_ids: Sequence[str]
    ) -> None:
        if len(face_ids) > 0:
            sync.delete_pending(conn, collection, list(face_ids))

    def after_commit(self, engine: Engine, collection: CollectionRecord) -> None:
        name = self.index_name(collection)
        with self._lock:
            if time.monotonic() < self._cooldown_until.get(name, 0.0):
                return
        try:
            sync.push(engine, collection, self.remote, name, wait=False)
        except Exception as exc:  # noqa: BLE001 - the write has committed: never fail it now
            # It stays pending: the repair pass sends it (the face is stored already).
            if isinstance(exc, FaceserveError | SQLAlchemyError):
                message = exc.message if isinstance(exc, FaceserveError) else type(exc).__name__
                log.warning("collection %s: Pinecone push deferred: %s", collection.name, message)
            else:
                log.exception("collection %s: Pinecone push failed", collection.name)
            with self._lock:
                self._cooldown_until[name] = time.monotonic() + COOLDOWN_S

    # -- reads ----------------------------------------------------------------------------

    def get(
        self, conn: Connection, collection: CollectionRecord, face_id: str
    ) -> np.ndarray | None:
        return self.get_many(conn, collection, [face_id]).get(face_id)

    def get_many(
        self, conn: Connection, collection: CollectionRecord, face_ids: Sequence[str]
    ) -> dict[str, np.ndarray]:
        return read_vectors(conn, sync.vectors_table(collection.schema_name), face_ids)

    def search(
        self,
        conn: Connection,
        collection: CollectionRecord,
        vector: np.ndarray,
        k: int,
        min_cosine: float,
    ) -> list[tuple[str, float]]:
        return [hit for hit in self._query(collection, vector, k) if hit[1] >= min_cosine]

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
        # Pinecone knows no persons (they change without the vectors changing): take a pool
        # of nearest faces and group them by person here. Approximate, like any ANN search:
        # a person none of whose faces is in the pool is missed.
        pool = min(MAX_TOP_K, max(100, PERSON_CANDIDATES_PER_RESULT * k))
        hits = [hit for hit in self._query(collection, vector, pool) if hit[1] >= min_cosine]
        if not hits:
            return []
        faces = tables_for(collection.schema_name).faces
        query = select(faces.c.id, faces.c.person_id).where(
            faces.c.id.in_([face_id for face_id, _ in hits]), faces.c.person_id.is_not(None)
        )
        if exclude_person is not None:
            query = query.where(faces.c.person_id != exclude_person)
        if exclude_face is not None:
            query = query.where(faces.c.id != exclude_face)
        person_of = {str(face_id): str(person) for face_id, person in conn.execute(query)}
        best: dict[str, float] = {}
        for face_id, cosine in hits:  # best first: each person's first hit is its best
            person = person_of.get(face_id)
            if person is not None and person not in best:
                best[person] = cosine
        return sorted(best.items(), key=lambda item: item[1], reverse=True)[:k]

    def count(self, conn: Connection, collection: CollectionRecord) -> int:
        return sync.count(conn, collection)

    def stats(self, conn: Connection, collection: CollectionRecord) -> dict[str, Any]:
        upserts, deletes = sync.pending(conn, collection)
        name = self.index_name(collection)
        return {
            "backend": self.name,
            "vectors": self.count(conn, collection),
            "pinecone_index": name,
            "pinecone_vectors": self.remote.count(name),  # Pinecone's own, lagging, count
            "pending_upserts": upserts,
            "pending_deletes": deletes,
        }

    # -- checks and repair ----------------------------------------------------------------

    def storage_problems(self, conn: Connection, collection: CollectionRecord) -> list[str]:
        problems = [
            f"table {collection.schema_name}.{table} is missing"
            for table in sync.TABLES
            if not table_exists(conn, collection.schema_name, table)
        ]
        name = self.index_name(collection)
        facts = self.remote.describe(name)  # Pinecone unreachable: raises (a 503)
        if facts is None:
            problems.append(f"Pinecone index {name} is missing")
        elif (facts.dimension, facts.metric) != (collection.embedding_dim, "cosine"):
            problems.append(
                f"Pinecone index {name} has dimension {facts.dimension} and metric "
                f"{facts.metric}, not {collection.embedding_dim} and cosine: delete it, and "
                "the repair pass recreates it"
            )
        elif not facts.ready:
            problems.append(f"Pinecone index {name} is not ready ({facts.state})")
        if not problems:  # the tables exist: count what is stuck
            upserts, deletes = sync.pending(conn, collection, older_than_s=PENDING_GRACE_S)
            if upserts:
                problems.append(
                    f"{upserts} face vector(s) waiting more than {PENDING_GRACE_S} s "
                    f"to reach Pinecone index {name}"
                )
            if deletes:
                problems.append(
                    f"{deletes} deleted face(s) waiting more than {PENDING_GRACE_S} s "
                    f"to leave Pinecone index {name}"
                )
        return problems

    def ensure_storage(self, conn: Connection, collection: CollectionRecord) -> list[str]:
        # Held until the commit: no push runs between requeueing and the new index.
        conn.execute(text("SELECT pg_advisory_xact_lock(:c, :k)"), sync.lock_keys(collection))
        done: list[str] = []
        if not all(table_exists(conn, collection.schema_name, t) for t in sync.TABLES):
            sync.create_tables(conn, collection)
            done.append(
                f"created tables {collection.schema_name}.pinecone_vectors/pinecone_deletes "
                "(vectors still in Pinecone are copied back by the repair pass)"
            )
        name = self.index_name(collection)
        if self.remote.describe(name) is None:
            self._create_index(collection)
            queued = sync.requeue_all(conn, collection)
            refill = f"{queued} vector(s) queued to refill it from PostgreSQL"
            done.append(f"recreated Pinecone index {name}; {refill if queued else 'empty'}")
        return done

    def repair(
        self, engine: Engine, collection: CollectionRecord, *, full: bool = True
    ) -> list[str]:
        name = self.index_name(collection)
        pushed, deleted = sync.push(engine, collection, self.remote, name, wait=True)
        with self._lock:
            self._cooldown_until.pop(name, None)
        done: list[str] = []
        if pushed:
            done.append(f"pushed {pushed} pending vector(s) to Pinecone index {name}")
        if deleted:
            done.append(f"removed {deleted} deleted face(s) from Pinecone index {name}")
        if full or sync.counts_disagree(engine, collection, self.remote, name):
            orphans, restored = sync.sweep(engine, collection, self.remote, name)
            if orphans:
                done.append(
                    f"deleted {orphans} orphaned vector(s) (no face in PostgreSQL) "
                    f"from Pinecone index {name}"
                )
            if restored:
                done.append(f"copied {restored} vector(s) back from Pinecone index {name}")
        return done

    # -- internals ------------------------------------------------------------------------

    def _create_index(self, collection: CollectionRecord) -> None:
        options = collection.vector_options
        cloud = options.get("cloud", self.cloud)
        region = options.get("region", self.region)
        self.remote.create(self.index_name(collection), collection.embedding_dim, cloud, region)

    def _query(
        self, collection: CollectionRecord, vector: np.ndarray, k: int
    ) -> list[tuple[str, float]]:
        values = np.asarray(vector, dtype=np.float32).tolist()
        matches = self.remote.query(self.index_name(collection), values, k)
        # Ids that are not face ids were not written by us: never let them reach SQL.
        return [(m.id, min(1.0, max(-1.0, m.score))) for m in matches if sync.is_uuid(m.id)]
