"""Persons in the store: faces of one individual grouped under an id the client chose
(Rekognition's users).

`Store` hands these calls to a `PersonStorage`; each public method is one transaction. The
rules that need a consistent view (one person per face, at most `max_faces` faces a person,
a new face must resemble the person's faces) are checked here under row locks, so racing
requests cannot break them; the numbers themselves (limits, the cosine a threshold means)
are the service layer's.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from sqlalchemy import Connection, Row, func, select
from sqlalchemy.dialects.postgresql import insert

from serve_app.errors import AlreadyExists, InvalidParameter, NotFound
from serve_app.store import request_tokens
from serve_app.store import validation as check
from serve_app.store.access import CollectionAccess
from serve_app.store.collection_schema import CollectionTables, tables_for
from serve_app.store.faces import remove_faces
from serve_app.store.records import (
    CollectionRecord,
    FaceRefusal,
    PersonFacesChange,
    PersonRecord,
    RefusedFace,
)

MAX_PAGE = 4096
MAX_K = 4096
MAX_QUERY_VECTORS = 4096


class PersonStorage:
    """The persons of every collection, reached through a `CollectionAccess`."""

    def __init__(self, access: CollectionAccess) -> None:
        self._access = access

    def create_person(
        self,
        collection_name: str,
        person_id: str,
        metadata: dict[str, Any] | None = None,
        request_token: str | None = None,
    ) -> PersonRecord:
        """A new person without faces; AlreadyExists if the id is taken in the collection."""
        pid = check.person_id(person_id)
        meta = check.json_object("metadata", metadata)
        token = check.request_token(request_token)
        with self._access.writing(collection_name) as (conn, collection, t):
            replay = request_tokens.claim(conn, t, token, "create_person", [pid, meta])
            if replay is not None:
                return PersonRecord.from_json(replay)
            row = conn.execute(
                insert(t.persons)
                .values(id=str(uuid.uuid4()), external_id=pid, metadata=meta)
                .on_conflict_do_nothing(index_elements=[t.persons.c.external_id])
                .returning(t.persons)
            ).one_or_none()
            if row is None:
                raise AlreadyExists(
                    f"person {pid!r} already exists in collection {collection_name!r}"
                )
            person = _person_record(row, 0)
            request_tokens.remember(conn, t, token, person.to_json())
            return person

    def get_person(self, collection_name: str, person_id: str) -> PersonRecord:
        """The person with its face count; NotFound if there is none."""
        pid = check.person_id(person_id)
        with self._access.reading() as conn:
            collection = self._access.collection(conn, collection_name)
            t = tables_for(collection.schema_name)
            row = _person_row(conn, t, pid, collection_name)
            return _person_record(row, _face_count(conn, t, row.id))

    def list_persons(
        self, collection_name: str, limit: int = 100, cursor: str | None = None
    ) -> tuple[list[PersonRecord], str | None]:
        """A page of persons by id, and the cursor of the next page (None at the end)."""
        limit = check.positive_int("limit", limit, maximum=MAX_PAGE)
        after = None if cursor is None else check.decode_person_cursor(cursor)
        with self._access.reading() as conn:
            collection = self._access.collection(conn, collection_name)
            t = tables_for(collection.schema_name)
            query = select(t.persons, _face_count_of(t).label("face_count"))
            if after is not None:
                query = query.where(t.persons.c.external_id > after)
            rows = conn.execute(query.order_by(t.persons.c.external_id).limit(limit + 1)).all()
        page = rows[:limit]
        more = len(rows) > limit
        next_cursor = check.encode_person_cursor(page[-1].external_id) if more else None
        return [_person_record(row, row.face_count) for row in page], next_cursor

    def delete_person(
        self,
        collection_name: str,
        person_id: str,
        delete_faces: bool = False,
        request_token: str | None = None,
    ) -> list[str]:
        """Delete a person. Its faces stay, belonging to nobody, unless `delete_faces`; returns
        the ids of the faces deleted."""
        pid = check.person_id(person_id)
        if not isinstance(delete_faces, bool):
            raise InvalidParameter("delete_faces must be true or false")
        token = check.request_token(request_token)
        with self._access.writing(collection_name) as (conn, collection, t):
            replay = request_tokens.claim(conn, t, token, "delete_person", [pid, delete_faces])
            if replay is not None:
                return list(replay["deleted_faces"])
            row = _person_row(conn, t, pid, collection_name, lock=True)
            deleted: list[str] = []
            if delete_faces:
                ids = _person_face_ids(conn, t, row.id)
                deleted = remove_faces(conn, self._access.index(collection), collection, ids)
            conn.execute(t.persons.delete().where(t.persons.c.id == row.id))
            request_tokens.remember(conn, t, token, {"deleted_faces": deleted})
        if deleted:
            self._access.after_commit(collection)
        return deleted

    def associate_faces(
        self,
        collection_name: str,
        person_id: str,
        face_ids: Sequence[str],
        min_cosine: float,
        max_faces: int,
        request_token: str | None = None,
    ) -> PersonFacesChange:
        """Make faces the person's. A face already the person's counts as done; a face of
        another person, or unknown, is refused. When the person has faces, a new one must
        reach `min_cosine` with at least one of them (any face joins a person without faces).
        InvalidParameter if the person would hold more than `max_faces` faces."""
        pid = check.person_id(person_id)
        ids = check.face_ids(face_ids)
        min_cos = check.cosine(min_cosine)
        limit = check.positive_int("max_faces", max_faces, maximum=MAX_PAGE)
        token = check.request_token(request_token)
        parameters = [pid, ids, min_cos, limit]
        with self._access.writing(collection_name) as (conn, collection, t):
            replay = request_tokens.claim(conn, t, token, "associate_faces", parameters)
            if replay is not None:
                return PersonFacesChange.from_json(replay)
            person = _person_row(conn, t, pid, collection_name, lock=True)
            owners = _lock_faces(conn, t, ids)
            own = _person_face_ids(conn, t, person.id)
            candidates = [i for i in ids if i in owners and owners[i] is None]
            best = self._best_cosines(conn, collection, candidates, own)
            refused: dict[str, RefusedFace] = {}
            for face_id in ids:
                if face_id not in owners:
                    refused[face_id] = RefusedFace(face_id, FaceRefusal.FACE_NOT_FOUND)
                elif owners[face_id] not in (None, pid):
                    refused[face_id] = RefusedFace(
                        face_id,
                        FaceRefusal.ASSOCIATED_TO_A_DIFFERENT_USER,
                        person_id=owners[face_id],
                    )
                elif face_id in best and best[face_id] < min_cos:
                    refused[face_id] = RefusedFace(
                        face_id, FaceRefusal.LOW_MATCH_CONFIDENCE, cosine=best[face_id]
                    )
            added = [i for i in candidates if i not in refused]
            if len(own) + len(added) > limit:
                raise InvalidParameter(
                    f"person {pid!r} holds {len(own)} faces; adding {len(added)} would pass "
                    f"the limit of {limit} faces a person"
                )
            if added:
                conn.execute(
                    t.faces.update()
                    .where(t.faces.c.id.in_(added))
                    .values(person_id=person.id, confirmed=True)
                )
            # Associated by hand: confirmed, and no longer "not this person".
            mine = [i for i in ids if i not in refused]
            if mine:
                conn.execute(t.faces.update().where(t.faces.c.id.in_(mine)).values(confirmed=True))
                conn.execute(
                    t.person_rejections.delete().where(
                        t.person_rejections.c.person_id == person.id,
                        t.person_rejections.c.face_id.in_(mine),
                    )
                )
            change = PersonFacesChange(
                _person_record(person, len(own) + len(added)),
                [i for i in ids if i not in refused],
                list(refused.values()),
            )
            request_tokens.remember(conn, t, token, change.to_json())
            return change

    def disassociate_faces(
        self,
        collection_name: str,
        person_id: str,
        face_ids: Sequence[str],
        request_token: str | None = None,
    ) -> PersonFacesChange:
        """Make faces belong to nobody. A face that belongs to nobody already counts as done;
        one of another person, or unknown, is refused."""
        pid = check.person_id(person_id)
        ids = check.face_ids(face_ids)
        token = check.request_token(request_token)
        with self._access.writing(collection_name) as (conn, collection, t):
            replay = request_tokens.claim(conn, t, token, "disassociate_faces", [pid, ids])
            if replay is not None:
                return PersonFacesChange.from_json(replay)
            person = _person_row(conn, t, pid, collection_name, lock=True)
            owners = _lock_faces(conn, t, ids)
            refused: list[RefusedFace] = []
            for face_id in ids:
                if face_id not in owners:
                    refused.append(RefusedFace(face_id, FaceRefusal.FACE_NOT_FOUND))
                elif owners[face_id] not in (None, pid):
                    reason = FaceRefusal.ASSOCIATED_TO_A_DIFFERENT_USER
                    refused.append(RefusedFace(face_id, reason, person_id=owners[face_id]))
            removed = [i for i in ids if owners.get(i) == pid]
            if removed:
                conn.execute(
                    t.faces.update()
                    .where(t.faces.c.id.in_(removed))
                    .values(person_id=None, confirmed=False)
                )
            refused_ids = {r.face_id for r in refused}
            change = PersonFacesChange(
                _person_record(person, _face_count(conn, t, person.id)),
                [i for i in ids if i not in refused_ids],
                refused,
            )
            request_tokens.remember(conn, t, token, change.to_json())
            return change

    def merge_persons(
        self, collection_name: str, into: str, other: str, max_faces: int
    ) -> PersonRecord:
        """Move `other`'s faces to `into` and delete `other`, at once. `into` keeps its
        metadata and gains the keys of `other`'s it lacks."""
        into_id = check.person_id(into, "person id to merge into")
        other_id = check.person_id(other, "person id to merge")
        limit = check.positive_int("max_faces", max_faces, maximum=MAX_PAGE)
        if into_id == other_id:
            raise InvalidParameter(f"cannot merge person {into_id!r} into itself")
        with self._access.writing(collection_name) as (conn, collection, t):
            # Both rows locked in one statement, in id order: two opposite merges cannot deadlock.
            rows = conn.execute(
                select(t.persons)
                .where(t.persons.c.external_id.in_([into_id, other_id]))
                .order_by(t.persons.c.id)
                .with_for_update()
            ).all()
            found = {row.external_id: row for row in rows}
            for pid in (into_id, other_id):
                if pid not in found:
                    raise NotFound(f"person {pid!r} not found in collection {collection_name!r}")
            target, merged = found[into_id], found[other_id]
            count = _face_count(conn, t, target.id) + _face_count(conn, t, merged.id)
            if count > limit:
                raise InvalidParameter(
                    f"merged, person {into_id!r} would hold {count} faces; "
                    f"a person holds at most {limit}"
                )
            # A merge by a user is a decision clustering keeps: both persons' faces confirmed.
            conn.execute(
                t.faces.update()
                .where(t.faces.c.person_id.in_([merged.id, target.id]))
                .values(person_id=target.id, confirmed=True)
            )
            conn.execute(
                t.person_rejections.update()
                .where(t.person_rejections.c.person_id == merged.id)
                .values(person_id=target.id)
                .where(
                    ~t.person_rejections.c.face_id.in_(
                        select(t.person_rejections.c.face_id).where(
                            t.person_rejections.c.person_id == target.id
                        )
                    )
                )
            )
            metadata = dict(merged.metadata) | dict(target.metadata)
            conn.execute(
                t.persons.update().where(t.persons.c.id == target.id).values(metadata=metadata)
            )
            conn.execute(t.persons.delete().where(t.persons.c.id == merged.id))
            return PersonRecord(
                into_id, metadata, count, target.created_at, target.name, bool(target.generated)
            )

    def search_persons(
        self,
        collection_name: str,
        vectors: np.ndarray,
        k: int,
        min_cosine: float,
        exclude_person: str | None = None,
        exclude_face: str | None = None,
    ) -> list[tuple[PersonRecord, float]]:
        """The `k` persons with the nearest faces to any of `vectors` (one, or a stack), each
        with its best cosine >= min_cosine, best first. Faces of nobody are not searched;
        neither are those of `exclude_person`, nor the face `exclude_face`."""
        k = check.positive_int("k", k, maximum=MAX_K)
        min_cos = check.cosine(min_cosine)
        excluded = None if exclude_person is None else check.person_id(exclude_person)
        face = None if exclude_face is None else check.face_id(exclude_face)
        with self._access.reading() as conn:
            collection = self._access.collection(conn, collection_name)
            t = tables_for(collection.schema_name)
            queries = _query_vectors(vectors, collection)
            excluded_row = None
            if excluded is not None:
                query = select(t.persons.c.id).where(t.persons.c.external_id == excluded)
                excluded_row = conn.execute(query).scalar_one_or_none()
            index = self._access.index(collection)
            best: dict[str, float] = {}
            for query_vector in queries:
                for row_id, cosine in index.search_persons(
                    conn, collection, query_vector, k, min_cos, excluded_row, face
                ):
                    best[row_id] = max(cosine, best.get(row_id, -1.0))
            ranked = sorted(best.items(), key=lambda item: item[1], reverse=True)[:k]
            persons = _persons_by_row_id(conn, t, [row_id for row_id, _ in ranked])
        return [(persons[row_id], cosine) for row_id, cosine in ranked if row_id in persons]

    def person_embeddings(self, collection_name: str, person_id: str) -> np.ndarray:
        """The embeddings of the person's faces, shape (faces, dim); NotFound without person."""
        pid = check.person_id(person_id)
        with self._access.reading() as conn:
            collection = self._access.collection(conn, collection_name)
            t = tables_for(collection.schema_name)
            row = _person_row(conn, t, pid, collection_name)
            ids = _person_face_ids(conn, t, row.id)
            vectors = self._access.index(collection).get_many(conn, collection, ids)
        if not vectors:
            return np.zeros((0, collection.embedding_dim), dtype=np.float32)
        return np.stack([vectors[i] for i in ids if i in vectors])

    # -- internals ------------------------------------------------------------------------

    def _best_cosines(
        self,
        conn: Connection,
        collection: CollectionRecord,
        candidates: list[str],
        own: list[str],
    ) -> dict[str, float]:
        """Each candidate face's best cosine with the person's faces (none if it has none)."""
        if not candidates or not own:
            return {}
        vectors = self._access.index(collection).get_many(conn, collection, candidates + own)
        mine = [vectors[i] for i in own if i in vectors]
        asked = [i for i in candidates if i in vectors]
        if not mine or not asked:
            return {}
        cosines = _unit(np.stack([vectors[i] for i in asked])) @ _unit(np.stack(mine)).T
        return {face_id: float(row.max()) for face_id, row in zip(asked, cosines, strict=True)}


def _person_row(
    conn: Connection, t: CollectionTables, pid: str, collection_name: str, lock: bool = False
) -> Row[Any]:
    query = select(t.persons).where(t.persons.c.external_id == pid)
    if lock:  # one change to a person's faces at a time
        query = query.with_for_update()
    row = conn.execute(query).one_or_none()
    if row is None:
        raise NotFound(f"person {pid!r} not found in collection {collection_name!r}")
    return row


def _face_count_of(t: CollectionTables) -> Any:
    return (
        select(func.count())
        .select_from(t.faces)
        .where(t.faces.c.person_id == t.persons.c.id)
        .scalar_subquery()
    )


def _face_count(conn: Connection, t: CollectionTables, row_id: str) -> int:
    query = select(func.count()).select_from(t.faces).where(t.faces.c.person_id == row_id)
    return int(conn.execute(query).scalar_one())


def _person_face_ids(conn: Connection, t: CollectionTables, row_id: str) -> list[str]:
    query = select(t.faces.c.id).where(t.faces.c.person_id == row_id).order_by(t.faces.c.seq)
    return [str(face_id) for face_id in conn.execute(query).scalars()]


def _lock_faces(conn: Connection, t: CollectionTables, ids: list[str]) -> dict[str, str | None]:
    """face id -> the client id of its person (None: nobody), the faces locked in id order."""
    if not ids:
        return {}
    query = (
        select(t.faces.c.id, t.persons.c.external_id)
        .select_from(t.faces.outerjoin(t.persons, t.faces.c.person_id == t.persons.c.id))
        .where(t.faces.c.id.in_(ids))
        .order_by(t.faces.c.id)
        .with_for_update(of=t.faces)
    )
    return {str(face_id): owner for face_id, owner in conn.execute(query).all()}


def _persons_by_row_id(
    conn: Connection, t: CollectionTables, row_ids: list[str]
) -> dict[str, PersonRecord]:
    if not row_ids:
        return {}
    query = select(t.persons, _face_count_of(t).label("face_count"))
    rows = conn.execute(query.where(t.persons.c.id.in_(row_ids))).all()
    return {str(row.id): _person_record(row, row.face_count) for row in rows}


def _query_vectors(vectors: Any, collection: CollectionRecord) -> Iterator[np.ndarray]:
    try:
        stacked = np.asarray(vectors, dtype=np.float32)
    except (TypeError, ValueError):
        raise InvalidParameter("query vectors must be numbers") from None
    if stacked.ndim == 1:
        stacked = stacked[None]
    if stacked.ndim != 2 or not 1 <= len(stacked) <= MAX_QUERY_VECTORS:
        raise InvalidParameter(f"give 1 to {MAX_QUERY_VECTORS} query vectors")
    return (check.embedding(v, collection.embedding_dim, collection.name) for v in stacked)


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _person_record(row: Row[Any], face_count: int) -> PersonRecord:
    return PersonRecord(
        person_id=row.external_id,
        metadata=dict(row.metadata),
        face_count=int(face_count),
        created_at=row.created_at,
        name=row.name,
        generated=bool(row.generated),
    )
