"""The PostgreSQL side of the Pinecone backend: pending writes, and sending them.

Each vector of a Pinecone collection is also kept in its schema (`pinecone_vectors`), marked
pending (`synced = false`) until Pinecone has it; a deleted face leaves a row in
`pinecone_deletes` until Pinecone has forgotten it. `push` sends what is pending; `sweep`
compares the whole index with PostgreSQL (the source of truth) and removes what it should
not hold. Pushes of one collection are serialised by a session-level advisory lock, so a
push never sends a vector after another has sent its deletion.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    DateTime,
    Engine,
    ForeignKey,
    Index,
    MetaData,
    Table,
    false,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, REAL, UUID, insert
from sqlalchemy.exc import SQLAlchemyError

from serve_app.store.collection_schema import (
    PLACEHOLDER,
    create_missing,
    in_schema,
    quoted_schema,
    tables_for,
)
from serve_app.store.records import CollectionRecord
from serve_app.store.vectors.pinecone_remote import PineconeRemote

# Rows read from PostgreSQL per push round (Pinecone gets them in batches of 100).
PUSH_CHUNK = 1000
# First key of the advisory locks that serialise pushes ("fcp"); the second is per collection.
_PUSH_LOCK_CLASS = 0x666370

# Vectors kept in PostgreSQL, pending until Pinecone has them; deletes Pinecone still owes.
_metadata = MetaData(schema=PLACEHOLDER)
_vectors = Table(
    "pinecone_vectors",
    _metadata,
    Column(
        "face_id",
        UUID(as_uuid=False),
        ForeignKey(f"{PLACEHOLDER}.faces.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("embedding", ARRAY(REAL), nullable=False),
    Column("synced", Boolean, nullable=False, server_default=false()),
    Column("changed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
Index("pinecone_vectors_pending", _vectors.c.changed_at, postgresql_where=~_vectors.c.synced)
_deletes = Table(
    "pinecone_deletes",
    _metadata,
    Column("face_id", UUID(as_uuid=False), primary_key=True),
    Column("deleted_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
TABLES = (_vectors.name, _deletes.name)
UUIDS = "CAST(:ids AS uuid[])"  # a bound list of face ids


def create_tables(conn: Connection, collection: CollectionRecord) -> None:
    """The collection's pending-write tables, and their index, where missing."""
    create_missing(conn, [in_schema(collection.schema_name, t) for t in (_vectors, _deletes)])


def add_pending(conn: Connection, collection: CollectionRecord, rows: list[dict[str, Any]]) -> None:
    """Keep vectors (`face_id`, `embedding` as a list) as pending upserts."""
    conn.execute(vectors_table(collection.schema_name).insert(), rows)


def delete_pending(conn: Connection, collection: CollectionRecord, ids: list[str]) -> None:
    """Drop the vectors of these faces and remember to delete them from Pinecone, even those
    not sent yet: a push may be sending them right now."""
    s = quoted_schema(collection.schema_name)
    conn.execute(
        text(
            f"INSERT INTO {s}.pinecone_deletes (face_id) SELECT face_id "
            f"FROM {s}.pinecone_vectors WHERE face_id = ANY({UUIDS}) ON CONFLICT DO NOTHING"
        ),
        {"ids": ids},
    )
    table = vectors_table(collection.schema_name)
    conn.execute(table.delete().where(table.c.face_id.in_(ids)))


def requeue_all(conn: Connection, collection: CollectionRecord) -> int:
    """Mark every vector pending again and forget pending deletes (for a new, empty index);
    returns how many vectors will be sent."""
    s = quoted_schema(collection.schema_name)
    queued = conn.execute(text(f"UPDATE {s}.pinecone_vectors SET synced = false WHERE synced"))
    conn.execute(text(f"DELETE FROM {s}.pinecone_deletes"))
    return int(queued.rowcount)


def pending(
    conn: Connection, collection: CollectionRecord, older_than_s: float = 0.0
) -> tuple[int, int]:
    """How many upserts and deletes are waiting (for longer than `older_than_s`)."""
    s = quoted_schema(collection.schema_name)
    row = conn.execute(
        text(
            f"SELECT (SELECT count(*) FROM {s}.pinecone_vectors WHERE NOT synced "
            "  AND changed_at <= now() - make_interval(secs => :age)), "
            f" (SELECT count(*) FROM {s}.pinecone_deletes "
            "  WHERE deleted_at <= now() - make_interval(secs => :age))"
        ),
        {"age": older_than_s},
    ).one()
    return int(row[0]), int(row[1])


def count(conn: Connection, collection: CollectionRecord) -> int:
    """How many vectors the collection holds (PostgreSQL's copy: exact)."""
    table = vectors_table(collection.schema_name)
    return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def push(
    engine: Engine, collection: CollectionRecord, remote: PineconeRemote, index: str, wait: bool
) -> tuple[int, int]:
    """Send pending upserts and deletes to `index`: (vectors upserted, ids deleted). Without
    `wait`, returns at once if another push holds the lock (that one re-checks after it
    releases, and sends what committed meanwhile). Pinecone's failures propagate."""
    pushed = deleted = 0
    for _ in range(3):
        with _push_lock(engine, collection, wait) as conn:
            if conn is None:
                return pushed, deleted
            up, down = _push_pending(conn, collection, remote, index)
            pushed, deleted = pushed + up, deleted + down
        # Rows committed while we held the lock may have seen it taken and left.
        with engine.connect() as conn:
            if pending(conn, collection) == (0, 0):
                break
    return pushed, deleted


def counts_disagree(
    engine: Engine, collection: CollectionRecord, remote: PineconeRemote, index: str
) -> bool:
    """Whether Pinecone's count differs from ours with nothing pending: then it may hold
    orphans. Cheap (one statistics call), so the periodic pass can afford it."""
    with engine.connect() as conn:
        if pending(conn, collection) != (0, 0):
            return False  # a push failed just now; the next pass looks again
        ours = count(conn, collection)
    return remote.count(index) != ours


def sweep(
    engine: Engine, collection: CollectionRecord, remote: PineconeRemote, index: str
) -> tuple[int, int]:
    """Delete the ids `index` holds for faces PostgreSQL does not have, and copy back the
    vectors of faces whose PostgreSQL copy was lost: (orphans deleted, vectors copied back).
    Safe beside pushes: a vector reaches Pinecone only after its face committed."""
    faces = tables_for(collection.schema_name).faces
    table = vectors_table(collection.schema_name)
    orphans = restored = 0
    for page in remote.list_ids(index):
        ids = [i for i in page if is_uuid(i)]
        with engine.begin() as conn:
            in_faces = select(faces.c.id).where(faces.c.id.in_(ids))
            in_copies = select(table.c.face_id).where(table.c.face_id.in_(ids))
            known = {str(i) for i in conn.execute(in_faces).scalars()}
            copied = {str(i) for i in conn.execute(in_copies).scalars()}
        stray = [i for i in page if i not in known]
        if stray:
            remote.delete_vectors(index, stray)
            orphans += len(stray)
        lost = [i for i in ids if i in known and i not in copied]
        if lost:
            restored += _copy_back(engine, collection, remote, index, lost)
    return orphans, restored


def is_uuid(value: str) -> bool:
    """Whether `value` is a face id as we write them (canonical uuid text)."""
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def vectors_table(schema_name: str) -> Table:
    """The collection's `pinecone_vectors`, for SQLAlchemy queries."""
    return in_schema(schema_name, _vectors)


def _push_pending(
    conn: Connection, collection: CollectionRecord, remote: PineconeRemote, index: str
) -> tuple[int, int]:
    s = quoted_schema(collection.schema_name)
    pushed = deleted = 0
    while True:
        gone = [
            str(i)
            for i in conn.execute(
                text(f"SELECT face_id FROM {s}.pinecone_deletes ORDER BY face_id LIMIT :n"),
                {"n": PUSH_CHUNK},
            ).scalars()
        ]
        conn.commit()
        if gone:
            remote.delete_vectors(index, gone)
            conn.execute(
                text(f"DELETE FROM {s}.pinecone_deletes WHERE face_id = ANY({UUIDS})"),
                {"ids": gone},
            )
            conn.commit()
            deleted += len(gone)
        rows = conn.execute(
            text(
                f"SELECT v.face_id, v.embedding, f.external_image_id "
                f"FROM {s}.pinecone_vectors v JOIN {s}.faces f ON f.id = v.face_id "
                "WHERE NOT v.synced ORDER BY v.face_id LIMIT :n"
            ),
            {"n": PUSH_CHUNK},
        ).all()
        conn.commit()
        if rows:
            remote.upsert(index, [_record(collection, row) for row in rows])
            conn.execute(
                text(f"UPDATE {s}.pinecone_vectors SET synced = true WHERE face_id = ANY({UUIDS})"),
                {"ids": [str(row.face_id) for row in rows]},
            )
            conn.commit()
            pushed += len(rows)
        if len(gone) < PUSH_CHUNK and len(rows) < PUSH_CHUNK:
            return pushed, deleted


def _record(collection: CollectionRecord, row: Any) -> tuple[str, list[float], dict[str, Any]]:
    metadata: dict[str, Any] = {"face_id": str(row.face_id), "collection_id": collection.id}
    if row.external_image_id is not None:  # Pinecone refuses null metadata values
        metadata["external_image_id"] = row.external_image_id
    return str(row.face_id), [float(x) for x in row.embedding], metadata


def _copy_back(
    engine: Engine,
    collection: CollectionRecord,
    remote: PineconeRemote,
    index: str,
    ids: list[str],
) -> int:
    fetched = {
        vid: values
        for vid, values in remote.fetch(index, ids).items()
        if len(values) == collection.embedding_dim
    }
    if not fetched:
        return 0
    rows = [{"face_id": vid, "embedding": v, "synced": True} for vid, v in fetched.items()]
    with engine.begin() as conn:
        statement = insert(vectors_table(collection.schema_name)).values(rows)
        return int(conn.execute(statement.on_conflict_do_nothing()).rowcount)


def lock_keys(collection: CollectionRecord) -> dict[str, int]:
    """The collection's push lock, as `:c, :k` parameters of pg_advisory_*lock."""
    # Two int4 keys: a space of their own, apart from the bigint migration lock.
    key = int.from_bytes(uuid.UUID(collection.id).bytes[:4], "big", signed=True)
    return {"c": _PUSH_LOCK_CLASS, "k": key}


@contextmanager
def _push_lock(
    engine: Engine, collection: CollectionRecord, wait: bool
) -> Iterator[Connection | None]:
    """A connection holding the collection's push lock (session-level, so the pushing can
    commit as it goes), or None if `wait` is False and another push holds it."""
    keys = lock_keys(collection)
    with engine.connect() as conn:
        if wait:
            conn.execute(text("SELECT pg_advisory_lock(:c, :k)"), keys)
        elif not conn.execute(text("SELECT pg_try_advisory_lock(:c, :k)"), keys).scalar_one():
            conn.rollback()
            yield None
            return
        conn.commit()
        try:
            yield conn
        finally:
            try:
                conn.rollback()
                conn.execute(text("SELECT pg_advisory_unlock(:c, :k)"), keys)
                conn.commit()
            except SQLAlchemyError:
                conn.invalidate()  # the server releases a closed session's locks
