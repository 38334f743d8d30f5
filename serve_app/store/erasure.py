"""Erasure of a person ("right to be forgotten"): every trace of them in one transaction.

`ERASURE_STEPS` is the one list of what holds a person's data. Each step gets the target
(the collection, the person's row and face ids, the images those faces came from) and
returns how many things it deleted; the counts are the receipt. A table added later that
names a person, a face or an image (identification history, album job records, …) adds its
step here, and the erasure test, which searches every table for the person's ids, checks it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, or_, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import Text

from serve_app.store import audit
from serve_app.store.collection_schema import CollectionTables, quoted_schema
from serve_app.store.control import job_images, jobs
from serve_app.store.faces import remove_faces
from serve_app.store.records import CollectionRecord
from serve_app.store.vectors import VectorIndex


@dataclass(frozen=True)
class ErasureTarget:
    collection: CollectionRecord
    tables: CollectionTables
    index: VectorIndex
    person_id: str  # the client's id
    person_row_id: str | None  # None: no such person (left), its other traces still go
    face_ids: list[str]
    image_ids: list[str]


ErasureStep = Callable[[Connection, ErasureTarget], int]


def _photos(conn: Connection, target: ErasureTarget) -> int:
    # A photo shows everyone in it: it goes even where other faces of it stay indexed.
    if not target.image_ids:
        return 0
    images = target.tables.images
    result = conn.execute(
        images.update()
        .where(images.c.id.in_(target.image_ids), images.c.data.is_not(None))
        .values(data=None)
    )
    return int(result.rowcount or 0)


def _faces(conn: Connection, target: ErasureTarget) -> int:
    # Their vectors too (pgvector rows; for Pinecone, pending upserts are dropped and the
    # deletes queued, sent after the commit).
    return len(remove_faces(conn, target.index, target.collection, target.face_ids))


def _person(conn: Connection, target: ErasureTarget) -> int:
    if target.person_row_id is None:
        return 0
    persons = target.tables.persons
    return int(conn.execute(persons.delete().where(persons.c.id == target.person_row_id)).rowcount)


def _request_tokens(conn: Connection, target: ErasureTarget) -> int:
    # Remembered replies (for idempotent retries) may carry the person's id or face ids.
    needles = [f'"{target.person_id}"', *(f'"{i}"' for i in target.face_ids)]
    s = quoted_schema(target.collection.schema_name)
    result = conn.execute(
        text(
            f"DELETE FROM {s}.request_tokens WHERE EXISTS (SELECT 1 FROM unnest(:needles) n "
            "WHERE strpos(response::text, n) > 0)"
        ).bindparams(bindparam("needles", type_=ARRAY(Text))),
        {"needles": needles},
    )
    return int(result.rowcount or 0)


def _job_images(conn: Connection, target: ErasureTarget) -> int:
    # Album jobs' rows of the images the person's faces came from (by key and content).
    if not target.image_ids:
        return 0
    images = target.tables.images
    found = conn.execute(
        select(images.c.external_image_id, images.c.content_hash).where(
            images.c.id.in_(target.image_ids)
        )
    ).all()
    names = [r.external_image_id for r in found if r.external_image_id]
    hashes = [r.content_hash for r in found if r.content_hash]
    if not names and not hashes:
        return 0
    of_collection = select(jobs.c.id).where(jobs.c.collection_id == target.collection.id)
    result = conn.execute(
        job_images.delete().where(
            job_images.c.job_id.in_(of_collection),
            or_(
                job_images.c.external_image_id.in_(names),
                job_images.c.content_hash.in_(hashes),
            ),
        )
    )
    return int(result.rowcount or 0)


def _audit(conn: Connection, target: ErasureTarget) -> int:
    return audit.redact(conn, target.collection.name, target.face_ids, [target.person_id])


# In order: job records and photos (found by the images) before the faces that lead to
# them, the person after its faces.
ERASURE_STEPS: list[tuple[str, ErasureStep]] = [
    ("job_images", _job_images),
    ("photos", _photos),
    ("faces", _faces),
    ("persons", _person),
    ("request_tokens", _request_tokens),
    ("audit_entries_redacted", _audit),
]


def erase(
    conn: Connection,
    collection: CollectionRecord,
    tables: CollectionTables,
    index: VectorIndex,
    person_id: str,
) -> dict[str, int]:
    """Run every step for the person; the counts by step (all 0: nothing was left)."""
    t = tables
    row_id = conn.execute(
        select(t.persons.c.id).where(t.persons.c.external_id == person_id).with_for_update()
    ).scalar_one_or_none()
    face_ids: list[str] = []
    image_ids: list[str] = []
    if row_id is not None:
        rows = conn.execute(
            select(t.faces.c.id, t.faces.c.image_id).where(t.faces.c.person_id == row_id)
        ).all()
        face_ids = [str(r.id) for r in rows]
        image_ids = sorted({str(r.image_id) for r in rows})
    target = ErasureTarget(
        collection,
        t,
        index,
        person_id,
        None if row_id is None else str(row_id),
        face_ids,
        image_ids,
    )
    counts = {name: step(conn, target) for name, step in ERASURE_STEPS}
    counts["vectors"] = counts["faces"]
    return counts
