"""Face rows in a collection's schema: written, read back as records, and deleted with their
vectors. Used by `Store` (faces) and `PersonStorage` (deleting a person's faces)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import Connection, Row, Select, select

from serve_app.errors import InvalidParameter
from serve_app.store import validation as check
from serve_app.store.collection_schema import CollectionTables, tables_for
from serve_app.store.records import CollectionRecord, FaceRecord, NewFace, NewImage
from serve_app.store.vectors import VectorIndex


def face_row(face: NewFace, image_id: str, external_image_id: str | None) -> dict[str, Any]:
    """The faces row of a new face (checked), without its vector."""
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


def faces_query(t: CollectionTables) -> Select[Any]:
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


def face_record(row: Row[Any]) -> FaceRecord:
    """A row of `faces_query` as a record."""
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
        confirmed=bool(row.confirmed),
    )


def faces_by_id(
    conn: Connection, collection: CollectionRecord, face_ids: Sequence[str]
) -> list[FaceRecord]:
    """The faces with these ids, in the order given; unknown ids are left out."""
    if not face_ids:
        return []
    t = tables_for(collection.schema_name)
    rows = conn.execute(faces_query(t).where(t.faces.c.id.in_(list(face_ids)))).all()
    by_id = {str(row.id): face_record(row) for row in rows}
    return [by_id[i] for i in face_ids if i in by_id]


def remove_faces(
    conn: Connection, index: VectorIndex, collection: CollectionRecord, ids: list[str]
) -> list[str]:
    """Delete faces, their vectors (in `index`) and the images left without faces; returns
    the ids deleted. The caller commits, then calls the index's `after_commit`."""
    if not ids:
        return []
    t = tables_for(collection.schema_name)
    index.delete(conn, collection, ids)
    deleted = conn.execute(
        t.faces.delete().where(t.faces.c.id.in_(ids)).returning(t.faces.c.id, t.faces.c.image_id)
    ).all()
    image_ids = list({row.image_id for row in deleted})
    if image_ids:
        still_used = select(t.faces.c.id).where(t.faces.c.image_id == t.images.c.id)
        conn.execute(t.images.delete().where(t.images.c.id.in_(image_ids), ~still_used.exists()))
    gone = {str(row.id) for row in deleted}
    return [i for i in ids if i in gone]


def insert_faces(
    conn: Connection,
    index: VectorIndex,
    collection: CollectionRecord,
    image: NewImage,
    external_image_id: str | None,
    faces: Sequence[NewFace],
) -> list[str]:
    """Write an image row, its faces and their vectors (checked); returns the face ids. An
    image with no faces still gets its row (album jobs record that it was seen). The caller
    commits, then calls the index's `after_commit`."""
    image_id = str(uuid.uuid4())
    t = tables_for(collection.schema_name)
    conn.execute(
        t.images.insert().values(
            id=image_id,
            external_image_id=external_image_id,
            width=image.width,
            height=image.height,
            data=image.data,
            content_hash=image.content_hash,
        )
    )
    if not faces:
        return []
    vectors = np.stack(
        [check.embedding(f.embedding, collection.embedding_dim, collection.name) for f in faces]
    )
    face_rows = [face_row(face, image_id, external_image_id) for face in faces]
    conn.execute(t.faces.insert(), face_rows)
    face_ids = [row["id"] for row in face_rows]
    index.add(conn, collection, face_ids, vectors)
    return face_ids
