"""People in the store: what clustering reads and writes, the user decisions it keeps
(split, "not this person", names), enrolment in one transaction, and collection stats.

Clustering runs and the identification history are in `cluster_runs.py` and `history.py`.
Each public method is one transaction; the decisions (thresholds, which faces go where) are
the service layer's.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import Connection, func, select
from sqlalchemy.dialects.postgresql import insert

from serve_app.errors import AlreadyExists, InvalidParameter, NotFound
from serve_app.store import validation as check
from serve_app.store.access import CollectionAccess
from serve_app.store.cluster_runs import latest_run
from serve_app.store.collection_schema import CollectionTables, tables_for
from serve_app.store.faces import face_record, faces_by_id, faces_query, insert_faces
from serve_app.store.people_records import (
    ClusterOutcome,
    ClusterPlan,
    ClusterSnapshot,
    CollectionStats,
    EnrollOutcome,
)
from serve_app.store.persons import MAX_PAGE, _person_record, _person_row
from serve_app.store.records import FaceRecord, NewFace, NewImage, PersonRecord

_READ_BATCH = 8192


class FaceOfAnotherPerson(AlreadyExists):
    """Enrolment refused: the face resembles another person above the threshold."""

    code = "face_matches_another_person"


def generated_person_id() -> str:
    """A new id for a person found by clustering."""
    return f"p-{uuid.uuid4().hex[:16]}"


class PeopleStorage:
    """People of every collection, reached through a `CollectionAccess`."""

    def __init__(self, access: CollectionAccess) -> None:
        self._access = access

    # -- clustering -----------------------------------------------------------------------

    def cluster_snapshot(self, collection_name: str) -> ClusterSnapshot:
        """Every face with its image, person, confirmation and vector; the rejections."""
        with self._access.reading() as conn:
            collection = self._access.collection(conn, collection_name)
            t = tables_for(collection.schema_name)
            rows = conn.execute(
                select(
                    t.faces.c.id, t.faces.c.image_id, t.faces.c.confirmed, t.persons.c.external_id
                )
                .select_from(t.faces.outerjoin(t.persons, t.faces.c.person_id == t.persons.c.id))
                .order_by(t.faces.c.seq)
            ).all()
            ids = [str(r.id) for r in rows]
            index = self._access.index(collection)
            found: dict[str, np.ndarray] = {}
            for start in range(0, len(ids), _READ_BATCH):
                found |= index.get_many(conn, collection, ids[start : start + _READ_BATCH])
            rejections = conn.execute(
                select(t.person_rejections.c.face_id, t.persons.c.external_id).join(
                    t.persons, t.person_rejections.c.person_id == t.persons.c.id
                )
            ).all()
            generated = conn.execute(
                select(t.persons.c.external_id).where(t.persons.c.generated)
            ).scalars()
            generated_ids = [str(g) for g in generated]
        kept = [i for i, face_id in enumerate(ids) if face_id in found]  # pending vectors wait
        dim = collection.embedding_dim
        vectors = (
            np.stack([found[ids[i]] for i in kept]).astype(np.float32)
            if kept
            else np.zeros((0, dim), dtype=np.float32)
        )
        return ClusterSnapshot(
            face_ids=[ids[i] for i in kept],
            image_ids=[str(rows[i].image_id) for i in kept],
            person_ids=[rows[i].external_id for i in kept],
            confirmed=np.array([bool(rows[i].confirmed) for i in kept], dtype=bool),
            vectors=vectors,
            rejections=[(str(f), str(p)) for f, p in rejections],
            generated_persons=generated_ids,
        )

    def apply_clustering(self, collection_name: str, plan: ClusterPlan) -> ClusterOutcome:
        """Write a run's decisions at once. Only faces that are unconfirmed and still with
        the person the run saw are moved; generated persons left empty are deleted."""
        with self._access.writing(collection_name) as (conn, _collection, t):
            asked = list(plan.expected)
            current: dict[str, tuple[str | None, bool]] = {}
            for start in range(0, len(asked), _READ_BATCH):
                chunk = asked[start : start + _READ_BATCH]
                for face_id, person, confirmed in conn.execute(
                    select(t.faces.c.id, t.persons.c.external_id, t.faces.c.confirmed)
                    .select_from(
                        t.faces.outerjoin(t.persons, t.faces.c.person_id == t.persons.c.id)
                    )
                    .where(t.faces.c.id.in_(chunk))
                    .order_by(t.faces.c.id)
                    .with_for_update(of=t.faces)
                ):
                    current[str(face_id)] = (person, bool(confirmed))

            def movable(face_id: str) -> bool:
                now = current.get(face_id)
                return now is not None and not now[1] and now[0] == plan.expected[face_id]

            row_ids = _person_row_ids(conn, t)
            created: list[str] = []
            assigned = skipped = 0
            for person_id, face_ids in plan.groups:
                moving = [f for f in face_ids if movable(f)]
                skipped += len(face_ids) - len(moving)
                if person_id is not None:  # already there: nothing to write
                    moving = [f for f in moving if current[f][0] != person_id]
                if not moving:
                    continue
                if person_id is None or person_id not in row_ids:
                    person_id = person_id or generated_person_id()
                    row_id = str(uuid.uuid4())
                    conn.execute(
                        t.persons.insert().values(id=row_id, external_id=person_id, generated=True)
                    )
                    row_ids[person_id] = row_id
                    created.append(person_id)
                _set_person(conn, t, moving, row_ids[person_id])
                assigned += len(moving)
            releasing = [f for f in plan.released if movable(f) and current[f][0] is not None]
            skipped += len([f for f in plan.released if not movable(f)])
            _set_person(conn, t, releasing, None)
            has_faces = select(t.faces.c.id).where(t.faces.c.person_id == t.persons.c.id)
            removed = conn.execute(
                t.persons.delete()
                .where(t.persons.c.generated, t.persons.c.name.is_(None), ~has_faces.exists())
                .returning(t.persons.c.external_id)
            ).scalars()
            return ClusterOutcome(
                assigned, len(releasing), created, [str(r) for r in removed], skipped
            )

    # -- user decisions -------------------------------------------------------------------

    def split_person(
        self,
        collection_name: str,
        person_id: str,
        face_ids: Sequence[str],
        new_person_id: str,
        generated: bool = False,
    ) -> tuple[PersonRecord, PersonRecord]:
        """Move some of a person's faces to a new person. Both sides are a user's decision:
        their faces are confirmed, and the moved ones are rejected from the old person."""
        pid = check.person_id(person_id)
        new_pid = check.person_id(new_person_id, "new_person_id")
        ids = list(dict.fromkeys(check.face_ids(face_ids)))
        if not ids:
            raise InvalidParameter("face_ids must name at least one face")
        with self._access.writing(collection_name) as (conn, _collection, t):
            old = _person_row(conn, t, pid, collection_name, lock=True)
            own = set(
                str(f)
                for f in conn.execute(
                    select(t.faces.c.id).where(t.faces.c.person_id == old.id).with_for_update()
                ).scalars()
            )
            strangers = [f for f in ids if f not in own]
            if strangers:
                raise InvalidParameter(f"face_ids: {strangers[0]} is not a face of person {pid!r}")
            row_id = str(uuid.uuid4())
            created = conn.execute(
                insert(t.persons)
                .values(id=row_id, external_id=new_pid, generated=generated)
                .on_conflict_do_nothing(index_elements=[t.persons.c.external_id])
                .returning(t.persons)
            ).one_or_none()
            if created is None:
                raise AlreadyExists(
                    f"person {new_pid!r} already exists in collection {collection_name!r}"
                )
            conn.execute(
                t.faces.update()
                .where(t.faces.c.id.in_(ids))
                .values(person_id=row_id, confirmed=True)
            )
            conn.execute(
                t.faces.update().where(t.faces.c.person_id == old.id).values(confirmed=True)
            )
            conn.execute(
                t.person_rejections.insert(),
                [{"face_id": f, "person_id": old.id} for f in ids],
            )
            return _person_record(old, len(own) - len(ids)), _person_record(created, len(ids))

    def reject_face(self, collection_name: str, person_id: str, face_id: str) -> PersonRecord:
        """ "Not this person": the face leaves the person (if it was there) and clustering
        never puts it back. Idempotent."""
        pid = check.person_id(person_id)
        fid = check.face_id(face_id)
        with self._access.writing(collection_name) as (conn, _collection, t):
            person = _person_row(conn, t, pid, collection_name, lock=True)
            face = conn.execute(
                select(t.faces.c.person_id).where(t.faces.c.id == fid).with_for_update()
            ).one_or_none()
            if face is None:
                raise NotFound(f"face {fid} not found in collection {collection_name!r}")
            if face.person_id == person.id:
                conn.execute(
                    t.faces.update()
                    .where(t.faces.c.id == fid)
                    .values(person_id=None, confirmed=False)
                )
            exists = conn.execute(
                select(t.person_rejections.c.face_id).where(
                    t.person_rejections.c.face_id == fid,
                    t.person_rejections.c.person_id == person.id,
                )
            ).first()
            if exists is None:
                conn.execute(t.person_rejections.insert().values(face_id=fid, person_id=person.id))
            count = conn.execute(
                select(func.count()).select_from(t.faces).where(t.faces.c.person_id == person.id)
            ).scalar_one()
            return _person_record(person, count)

    def update_person(
        self,
        collection_name: str,
        person_id: str,
        changes: dict[str, Any],
    ) -> PersonRecord:
        """Set a person's `name` (None clears it) and/or replace its `metadata`."""
        pid = check.person_id(person_id)
        values: dict[str, Any] = {}
        if "name" in changes:
            values["name"] = check.short_text("name", changes["name"], required=False)
        if "metadata" in changes:
            values["metadata"] = check.json_object("metadata", changes["metadata"])
        with self._access.writing(collection_name) as (conn, _collection, t):
            row = _person_row(conn, t, pid, collection_name, lock=True)
            if values:
                row = conn.execute(
                    t.persons.update()
                    .where(t.persons.c.id == row.id)
                    .values(**values)
                    .returning(t.persons)
                ).one()
            count = conn.execute(
                select(func.count()).select_from(t.faces).where(t.faces.c.person_id == row.id)
            ).scalar_one()
            return _person_record(row, count)

    def person_faces(
        self, collection_name: str, person_id: str, limit: int = 100, cursor: str | None = None
    ) -> tuple[list[FaceRecord], str | None]:
        """A page of a person's faces in indexing order, and the next page's cursor."""
        pid = check.person_id(person_id)
        limit = check.positive_int("limit", limit, maximum=MAX_PAGE)
        after = -1 if cursor is None else check.decode_cursor(cursor)
        with self._access.reading() as conn:
            collection = self._access.collection(conn, collection_name)
            t = tables_for(collection.schema_name)
            row = _person_row(conn, t, pid, collection_name)
            rows = conn.execute(
                faces_query(t)
                .where(t.faces.c.person_id == row.id, t.faces.c.seq > after)
                .order_by(t.faces.c.seq)
                .limit(limit + 1)
            ).all()
        page = rows[:limit]
        next_cursor = check.encode_cursor(page[-1].seq) if len(rows) > limit else None
        return [face_record(r) for r in page], next_cursor

    # -- enrolment ------------------------------------------------------------------------

    def enroll(
        self,
        collection_name: str,
        person_id: str,
        image: NewImage,
        face: NewFace,
        min_cosine: float,
        max_faces: int,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> EnrollOutcome:
        """Create the person if needed, index the face and make it the person's (confirmed),
        in one transaction. Refused (FaceOfAnotherPerson) if the face reaches `min_cosine`
        with a face of another person."""
        pid = check.person_id(person_id)
        min_cos = check.cosine(min_cosine)
        label = check.short_text("name", name, required=False)
        meta = check.json_object("metadata", metadata)
        external_image_id = check.short_text(
            "external_image_id", image.external_image_id, required=False
        )
        with self._access.writing(collection_name) as (conn, collection, t):
            index = self._access.index(collection)
            vector = check.embedding(face.embedding, collection.embedding_dim, collection_name)
            row = conn.execute(
                select(t.persons).where(t.persons.c.external_id == pid).with_for_update()
            ).one_or_none()
            own_row = None if row is None else row.id
            for other_row, cosine in index.search_persons(
                conn, collection, vector, 1, min_cos, own_row, None
            ):
                other = conn.execute(
                    select(t.persons.c.external_id).where(t.persons.c.id == other_row)
                ).scalar_one()
                raise FaceOfAnotherPerson(
                    f"the face matches person {other!r} (cosine {cosine:.3f}); "
                    f"not enrolled as {pid!r}"
                )
            created = row is None
            if created:
                row = conn.execute(
                    t.persons.insert()
                    .values(id=str(uuid.uuid4()), external_id=pid, metadata=meta, name=label)
                    .returning(t.persons)
                ).one()
            else:
                values: dict[str, Any] = {}
                if label is not None:
                    values["name"] = label
                if metadata is not None:
                    values["metadata"] = dict(row.metadata) | meta
                if values:
                    row = conn.execute(
                        t.persons.update()
                        .where(t.persons.c.id == row.id)
                        .values(**values)
                        .returning(t.persons)
                    ).one()
            count = conn.execute(
                select(func.count()).select_from(t.faces).where(t.faces.c.person_id == row.id)
            ).scalar_one()
            if count + 1 > max_faces:
                raise InvalidParameter(
                    f"person {pid!r} holds {count} faces; a person holds at most {max_faces}"
                )
            (face_id,) = insert_faces(conn, index, collection, image, external_image_id, [face])
            _set_person(conn, t, [face_id], row.id, confirmed=True)
            (record,) = faces_by_id(conn, collection, [face_id])
        self._access.after_commit(collection)
        return EnrollOutcome(_person_record(row, count + 1), record, created)

    # -- stats ----------------------------------------------------------------------------

    def collection_stats(self, collection_name: str) -> CollectionStats:
        """Counts of faces (all, unassigned, confirmed), persons, images; the last run."""
        with self._access.reading() as conn:
            collection = self._access.collection(conn, collection_name)
            t = tables_for(collection.schema_name)
            faces = conn.execute(
                select(
                    func.count(),
                    func.count().filter(t.faces.c.person_id.is_(None)),
                    func.count().filter(t.faces.c.confirmed),
                ).select_from(t.faces)
            ).one()
            persons = conn.execute(
                select(func.count(), func.count().filter(t.persons.c.generated)).select_from(
                    t.persons
                )
            ).one()
            images = conn.execute(select(func.count()).select_from(t.images)).scalar_one()
            last = latest_run(conn, collection)
        return CollectionStats(
            faces=int(faces[0]),
            persons=int(persons[0]),
            unassigned_faces=int(faces[1]),
            confirmed_faces=int(faces[2]),
            images=int(images),
            generated_persons=int(persons[1]),
            model_version=collection.model_version,
            last_cluster_run=last,
        )


def _person_row_ids(conn: Connection, t: CollectionTables) -> dict[str, str]:
    rows = conn.execute(select(t.persons.c.external_id, t.persons.c.id)).all()
    return {str(external): str(row_id) for external, row_id in rows}


def _set_person(
    conn: Connection,
    t: CollectionTables,
    face_ids: list[str],
    row_id: str | None,
    confirmed: bool = False,
) -> None:
    for start in range(0, len(face_ids), _READ_BATCH):
        chunk = face_ids[start : start + _READ_BATCH]
        conn.execute(
            t.faces.update()
            .where(t.faces.c.id.in_(chunk))
            .values(person_id=row_id, confirmed=confirmed)
        )
