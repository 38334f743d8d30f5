"""pgvector: each collection's vectors in `<schema>.face_vectors`, with an HNSW cosine index.

Vectors are written in the caller's transaction, so a face and its vector commit together,
with a row in the collection's `vector_changes` log. With a `LocalIndexConfig` (the Search
deployment's), large collections are searched in a replica-local index that follows that log
(`replica.py`), and in PostgreSQL while it warms or when it is over its memory cap.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from pgvector.sqlalchemy import VECTOR
from sqlalchemy import (
    Column,
    Connection,
    Engine,
    ForeignKey,
    Index,
    MetaData,
    Table,
    false,
    func,
    literal,
    select,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.schema import DropTable

from serve_app.store.collection_schema import (
    PLACEHOLDER,
    create_missing,
    in_schema,
    quoted_schema,
    schema_exists,
    table_exists,
    tables_for,
)
from serve_app.store.records import CollectionRecord
from serve_app.store.vectors.base import VectorIndex, read_vectors
from serve_app.store.vectors.replica import LocalIndex, LocalIndexConfig, LocalIndexes

# Below this many vectors a search is an exact scan: perfect recall at the cost of HNSW.
# Measured here (2 cores shared with a benchmark; 128-D random unit vectors, k=10, median of
# 50 queries, ms, exact vs HNSW ef_search=100, HNSW recall@10 in brackets):
#   1k: 0.2 vs 0.2 (1.00)   2k: 0.7 vs 0.7 (1.00)   5k: 1.9-2.1 vs 1.6 (0.92)
#   10k: 4-8 vs 2.0 (0.81)  20k: 6-7 vs 2.7 (0.67)  50k: 14-20 vs 4-6 (0.43)
# Random vectors are HNSW's worst case (real face embeddings cluster and do far better),
# but at 5k the exact scan costs no more than HNSW, and beyond it the gap grows with n
# (and 4x with 512-D), so that is the break-even.
EXACT_SEARCH_BELOW = 5_000
DEFAULT_EF_SEARCH = 100
MAX_EF_SEARCH = 1_000  # pgvector's upper limit for hnsw.ef_search
# A person search over HNSW aggregates this many nearest faces per wanted person (a person
# holds up to 100 faces), up to MAX_PERSON_CANDIDATES.
PERSON_CANDIDATES_PER_RESULT = 10
MAX_PERSON_CANDIDATES = 5_000
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 64
_HNSW_INDEX = "face_vectors_embedding_hnsw"
# Extra candidates asked of a local index, for faces deleted but not yet applied there.
_LOCAL_SLACK = 16


class PgVectorIndex(VectorIndex):
    """Vectors in PostgreSQL next to the faces they belong to."""

    name = "pgvector"
    max_dim = 2_000  # the most dimensions an HNSW index on `vector` accepts
    _iterative_scan: bool | None = None  # whether the server's pgvector has it (asked once)

    def __init__(self, local: LocalIndexConfig | None = None) -> None:
        """`local`: keep replica-local indexes of large collections (None: search in
        PostgreSQL only)."""
        self.local_config = local
        self.local: LocalIndexes | None = None

    def attach(self, engine: Engine) -> None:
        if self.local_config is not None and self.local is None:
            self.local = LocalIndexes(engine, self.local_config)

    def close(self) -> None:
        if self.local is not None:
            self.local.close()

    def after_commit(self, engine: Engine, collection: CollectionRecord) -> None:
        if self.local is not None:
            self.local.changed(collection)

    def warm(self, conn: Connection, collection: CollectionRecord) -> str | None:
        if self.local is None:
            return None
        self.local.index_for(collection, self._big_enough(conn, collection))
        return self.local.state(collection)

    def create(self, conn: Connection, collection: CollectionRecord) -> None:
        self.ensure_storage(conn, collection)

    def drop(self, conn: Connection, collection: CollectionRecord) -> None:
        # Normally gone already with the collection's schema; IF EXISTS makes that fine.
        if schema_exists(conn, collection.schema_name):
            table = _vectors_table(collection.schema_name, collection.embedding_dim)
            conn.execute(DropTable(table, if_exists=True))

    def storage_problems(self, conn: Connection, collection: CollectionRecord) -> list[str]:
        where = f"{collection.schema_name}.face_vectors"
        if not table_exists(conn, collection.schema_name, "face_vectors"):
            return [f"vector table {where} is missing"]
        if not table_exists(conn, collection.schema_name, _HNSW_INDEX):
            return [f"HNSW index {collection.schema_name}.{_HNSW_INDEX} is missing"]
        return []

    def ensure_storage(self, conn: Connection, collection: CollectionRecord) -> list[str]:
        has_vector = conn.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'vector'"))
        if has_vector.first() is None:
            conn.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
        table = _vectors_table(collection.schema_name, collection.embedding_dim)
        done = [
            f"created vector table {name}" if kind == "table" else f"created HNSW index {name}"
            for kind, name in create_missing(conn, [table])
        ]
        if done and not self._all_faces_have_vectors(conn, collection):
            # The vectors went with the table: those faces stay unsearchable until re-indexed.
            done.append(
                "faces indexed before the vector table was lost have no vector: "
                "index their images again to make them searchable"
            )
        return done

    def add(
        self,
        conn: Connection,
        collection: CollectionRecord,
        face_ids: Sequence[str],
        vectors: np.ndarray,
    ) -> None:
        if len(face_ids) == 0:
            return
        table = _vectors_table(collection.schema_name, collection.embedding_dim)
        rows = [
            {"face_id": face_id, "embedding": np.asarray(vector, dtype=np.float32)}
            for face_id, vector in zip(face_ids, vectors, strict=True)
        ]
        conn.execute(table.insert(), rows)
        _log_changes(conn, collection, face_ids, deleted=False)

    def delete(
        self, conn: Connection, collection: CollectionRecord, face_ids: Sequence[str]
    ) -> None:
        if len(face_ids) == 0:
            return
        table = _vectors_table(collection.schema_name, collection.embedding_dim)
        _log_changes(conn, collection, face_ids, deleted=True)  # while the faces are there
        conn.execute(table.delete().where(table.c.face_id.in_(list(face_ids))))

    def get(
        self, conn: Connection, collection: CollectionRecord, face_id: str
    ) -> np.ndarray | None:
        table = _vectors_table(collection.schema_name, collection.embedding_dim)
        value = conn.execute(
            select(table.c.embedding).where(table.c.face_id == face_id)
        ).scalar_one_or_none()
        return None if value is None else np.asarray(value, dtype=np.float32)

    def get_many(
        self, conn: Connection, collection: CollectionRecord, face_ids: Sequence[str]
    ) -> dict[str, np.ndarray]:
        return read_vectors(
            conn, _vectors_table(collection.schema_name, collection.embedding_dim), face_ids
        )

    def search(
        self,
        conn: Connection,
        collection: CollectionRecord,
        vector: np.ndarray,
        k: int,
        min_cosine: float,
    ) -> list[tuple[str, float]]:
        local = self._local_index(conn, collection)
        if local is not None:
            # A few more than k: faces deleted but not yet applied locally are dropped by
            # the caller, who reads the hits back from `faces`.
            hits = local.search(vector, k + _LOCAL_SLACK)
            return [(face_id, cosine) for _, face_id, cosine in hits if cosine >= min_cosine]
        table = _vectors_table(collection.schema_name, collection.embedding_dim)
        exact = k > MAX_EF_SEARCH or self._holds_fewer_than(conn, table, EXACT_SEARCH_BELOW)
        if exact:
            conn.execute(text("SELECT set_config('enable_indexscan', 'off', true)"))
        else:
            ef_search = min(MAX_EF_SEARCH, max(DEFAULT_EF_SEARCH, 2 * k))
            conn.execute(
                text("SELECT set_config('hnsw.ef_search', :ef, true)"), {"ef": str(ef_search)}
            )
        distance = table.c.embedding.cosine_distance(np.asarray(vector, dtype=np.float32))
        # Top-k by distance first, filter afterwards: a WHERE on the distance makes the HNSW
        # scan return fewer than k rows (it filters the ef_search candidates, not the table).
        rows = conn.execute(
            select(table.c.face_id, distance.label("distance")).order_by("distance").limit(k)
        ).all()
        if exact:
            conn.execute(text("SELECT set_config('enable_indexscan', 'on', true)"))
        hits = [(str(face_id), min(1.0, max(-1.0, 1.0 - d))) for face_id, d in rows]
        return [(face_id, cosine) for face_id, cosine in hits if cosine >= min_cosine]

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
        local = self._local_index(conn, collection)
        if local is not None:
            found = _search_persons_locally(
                conn, local, collection, vector, k, min_cosine, exclude_person, exclude_face
            )
            if found is not None:
                return found
        table = _vectors_table(collection.schema_name, collection.embedding_dim)
        faces = tables_for(collection.schema_name).faces
        distance = table.c.embedding.cosine_distance(np.asarray(vector, dtype=np.float32))
        conditions = [faces.c.person_id.is_not(None)]
        if exclude_person is not None:
            conditions.append(faces.c.person_id != exclude_person)
        if exclude_face is not None:
            conditions.append(table.c.face_id != exclude_face)
        joined = table.join(faces, faces.c.id == table.c.face_id)
        few = self._few_person_faces(conn, faces, EXACT_SEARCH_BELOW)
        if few or not self._has_iterative_scan(conn):
            # Every person's nearest face, exactly.
            candidates = select(faces.c.person_id, distance.label("distance")).select_from(joined)
            candidates = candidates.where(*conditions).subquery()
        else:
            # The nearest faces that belong to persons, through HNSW: pgvector's iterative scan
            # keeps going past ef_search until enough faces pass the person filter.
            n = min(MAX_PERSON_CANDIDATES, max(DEFAULT_EF_SEARCH, PERSON_CANDIDATES_PER_RESULT * k))
            conn.execute(
                text(
                    "SELECT set_config('hnsw.ef_search', :ef, true), "
                    "set_config('hnsw.iterative_scan', 'strict_order', true)"
                ),
                {"ef": str(min(MAX_EF_SEARCH, max(DEFAULT_EF_SEARCH, 2 * k)))},
            )
            candidates = (
                select(faces.c.person_id, distance.label("distance"))
                .select_from(joined)
                .where(*conditions)
                .order_by("distance")
                .limit(n)
                .subquery()
            )
        best = func.min(candidates.c.distance).label("distance")
        rows = conn.execute(
            select(candidates.c.person_id, best)
            .group_by(candidates.c.person_id)
            .order_by("distance")
            .limit(k)
        ).all()
        hits = [(str(person), min(1.0, max(-1.0, 1.0 - d))) for person, d in rows]
        return [(person, cosine) for person, cosine in hits if cosine >= min_cosine]

    def count(self, conn: Connection, collection: CollectionRecord) -> int:
        table = _vectors_table(collection.schema_name, collection.embedding_dim)
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())

    def stats(self, conn: Connection, collection: CollectionRecord) -> dict[str, Any]:
        found = super().stats(conn, collection)
        if self.local is not None:
            found["local_index"] = self.local.stats(collection)
        return found

    def _local_index(self, conn: Connection, collection: CollectionRecord) -> LocalIndex | None:
        """The collection's replica-local index when it is ready (a build is queued for a
        large collection that has none)."""
        if self.local is None:
            return None
        return self.local.index_for(collection, self._big_enough(conn, collection))

    def _big_enough(self, conn: Connection, collection: CollectionRecord) -> Callable[[], bool]:
        minimum = self.local_config.min_faces if self.local_config else 0
        table = _vectors_table(collection.schema_name, collection.embedding_dim)
        return lambda: minimum <= 0 or not self._holds_fewer_than(conn, table, minimum)

    def _has_iterative_scan(self, conn: Connection) -> bool:
        # pgvector 0.8 added iterative index scans; without them a filtered HNSW scan stops
        # at ef_search rows, so older servers search persons exactly instead.
        if self._iterative_scan is None:
            version = conn.execute(
                text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            ).scalar_one_or_none()
            parts = tuple(int(p) for p in str(version or "0").split(".")[:2] if p.isdigit())
            self._iterative_scan = parts >= (0, 8)
        return self._iterative_scan

    @staticmethod
    def _all_faces_have_vectors(conn: Connection, collection: CollectionRecord) -> bool:
        s = quoted_schema(collection.schema_name)
        orphaned = conn.execute(
            text(
                f"SELECT 1 FROM {s}.faces f WHERE NOT EXISTS "
                f"(SELECT 1 FROM {s}.face_vectors v WHERE v.face_id = f.id) LIMIT 1"
            )
        )
        return orphaned.first() is None

    @staticmethod
    def _few_person_faces(conn: Connection, faces: Table, n: int) -> bool:
        # Reads at most n entries of the faces_person_id index.
        head = select(literal(1)).select_from(faces).where(faces.c.person_id.is_not(None))
        head = head.limit(n).subquery()
        return conn.execute(select(func.count()).select_from(head)).scalar_one() < n

    @staticmethod
    def _holds_fewer_than(conn: Connection, table: Table, n: int) -> bool:
        # The planner's row estimate settles large tables without touching them; otherwise
        # count, reading at most n rows.
        estimate = conn.execute(
            text("SELECT reltuples FROM pg_class WHERE oid = CAST(:t AS regclass)"),
            {"t": f"{quoted_schema(str(table.schema))}.face_vectors"},
        ).scalar_one()
        if estimate >= 2 * n:
            return False
        head = select(literal(1)).select_from(table).limit(n).subquery()
        return conn.execute(select(func.count()).select_from(head)).scalar_one() < n


@lru_cache(maxsize=64)
def vectors_definition(dim: int) -> Table:
    """The vector table of a collection of `dim`-D embeddings, with its HNSW index (defined
    once, in the placeholder schema; `_vectors_table` puts it in a collection's)."""
    return Table(
        "face_vectors",
        MetaData(schema=PLACEHOLDER),
        Column(
            "face_id",
            UUID(as_uuid=False),
            ForeignKey(f"{PLACEHOLDER}.faces.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        # Uncompressed, in-line vectors: 512-D ones are otherwise TOASTed, ~5x slower.
        Column("embedding", VECTOR(dim), nullable=False, info={"storage": "PLAIN"}),
        Index(
            _HNSW_INDEX,
            "embedding",
            postgresql_using="hnsw",
            postgresql_with={"m": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION},
            postgresql_ops={"embedding": "vector_cosine_ops"},
        ),
    )


def _vectors_table(schema_name: str, dim: int) -> Table:
    return in_schema(schema_name, vectors_definition(dim))


def _log_changes(
    conn: Connection, collection: CollectionRecord, face_ids: Sequence[str], *, deleted: bool
) -> None:
    """One `vector_changes` row per face, in the caller's transaction."""
    t = tables_for(collection.schema_name)
    flag = true() if deleted else false()
    conn.execute(
        t.vector_changes.insert().from_select(
            ["face_seq", "deleted"],
            select(t.faces.c.seq, flag)
            .where(t.faces.c.id.in_(list(face_ids)))
            .order_by(t.faces.c.seq),
        )
    )


def _search_persons_locally(
    conn: Connection,
    local: LocalIndex,
    collection: CollectionRecord,
    vector: np.ndarray,
    k: int,
    min_cosine: float,
    exclude_person: str | None,
    exclude_face: str | None,
) -> list[tuple[str, float]] | None:
    """Persons of the nearest faces in the local index, each with its best cosine. The pool
    of candidates grows tenfold (up to MAX_PERSON_CANDIDATES) while it holds fewer than `k`
    persons and more may lie further; None if it still does (PostgreSQL then answers,
    exactly where few faces belong to persons)."""
    n = min(MAX_PERSON_CANDIDATES, max(DEFAULT_EF_SEARCH, PERSON_CANDIDATES_PER_RESULT * k))
    faces = tables_for(collection.schema_name).faces
    while True:
        hits = local.search(vector, n)
        if not hits:
            return []
        query = select(faces.c.seq, faces.c.person_id).where(
            faces.c.seq.in_([seq for seq, _, _ in hits]), faces.c.person_id.is_not(None)
        )
        if exclude_person is not None:
            query = query.where(faces.c.person_id != exclude_person)
        if exclude_face is not None:
            query = query.where(faces.c.id != exclude_face)
        person_of = {int(seq): str(person) for seq, person in conn.execute(query)}
        best: dict[str, float] = {}
        for seq, _, cosine in hits:  # most similar first: a person's first hit is its best
            person = person_of.get(seq)
            if person is not None and person not in best:
                best[person] = cosine
        if len(best) >= k or len(hits) < n or hits[-1][2] < min_cosine:
            break
        if n >= MAX_PERSON_CANDIDATES:
            return None
        n = min(MAX_PERSON_CANDIDATES, 10 * n)
    ranked = sorted(best.items(), key=lambda item: item[1], reverse=True)[:k]
    return [(person, cosine) for person, cosine in ranked if cosine >= min_cosine]
