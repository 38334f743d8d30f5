"""Faces: atomic indexing, pagination, lookups and deletion."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from sqlalchemy import text

from serve_app.errors import InvalidParameter, NotFound
from serve_app.store import CollectionRecord, NewImage, PgVectorIndex, Store
from tests.store.conftest import DIM, new_face, unit_vectors


def row_count(store: Store, collection: CollectionRecord, table: str) -> int:
    with store.engine.connect() as conn:
        return conn.execute(
            text(f'SELECT count(*) FROM "{collection.schema_name}".{table}')
        ).scalar()


def add(store: Store, collection: CollectionRecord, vectors: np.ndarray, image: str = "img"):
    faces = [new_face(v, n=i) for i, v in enumerate(vectors)]
    return store.add_faces(collection.name, NewImage(image, 640, 480), faces)


def test_add_faces_returns_and_stores_everything(
    store: Store, collection: CollectionRecord, rng: np.random.Generator
) -> None:
    vectors = unit_vectors(rng, 3)
    records = add(store, collection, vectors, image="photo-1")
    assert len(records) == 3
    assert len({r.image_id for r in records}) == 1
    first = records[0]
    assert first.external_image_id == "photo-1"
    assert first.bounding_box == {"left": 0.1, "top": 0.2, "width": 0.3, "height": 0.4}
    assert first.landmarks == [[1.0, 2.0], [3.0, 4.0]]
    assert (first.confidence, first.quality, first.metadata) == (99.0, {"sharpness": 0.8}, {"n": 0})
    assert first.person_id is None and first.created_at is not None
    assert store.get_faces(collection.name, [r.face_id for r in records]) == records
    assert store.count_faces(collection.name) == 3
    assert store.get_collection(collection.name).face_count == 3
    stored = store.get_embedding(collection.name, records[1].face_id)
    assert stored.dtype == np.float32
    np.testing.assert_array_equal(stored, vectors[1])


def test_wrong_dimension_in_a_batch_writes_nothing(
    store: Store, collection: CollectionRecord, rng: np.random.Generator
) -> None:
    good = list(unit_vectors(rng, 3))
    batch = [new_face(v) for v in good[:2]] + [new_face(np.ones(DIM + 1, np.float32))]
    with pytest.raises(InvalidParameter, match="dimensional"):
        store.add_faces(collection.name, NewImage(None, 10, 10), batch)
    for bad in (np.full(DIM, np.nan, np.float32), np.zeros(DIM, np.float32)):
        with pytest.raises(InvalidParameter):
            store.add_faces(collection.name, NewImage(None, 10, 10), [new_face(bad)])
    assert row_count(store, collection, "images") == 0
    assert row_count(store, collection, "faces") == 0
    assert row_count(store, collection, "face_vectors") == 0


class FailingIndex(PgVectorIndex):
    """Writes the vectors, then fails: as if the server died mid-transaction."""

    def add(self, conn, collection, face_ids, vectors) -> None:  # type: ignore[no-untyped-def]
        super().add(conn, collection, face_ids, vectors)
        raise RuntimeError("vector index failed after writing")


def test_failure_after_rows_are_written_rolls_everything_back(
    store: Store, collection: CollectionRecord, rng: np.random.Generator
) -> None:
    failing = Store(store.engine, FailingIndex())
    with pytest.raises(RuntimeError, match="after writing"):
        add(failing, collection, unit_vectors(rng, 4))
    for table in ("images", "faces", "face_vectors"):
        assert row_count(store, collection, table) == 0


def test_list_faces_pages_visit_every_face_once(
    store: Store, collection: CollectionRecord, rng: np.random.Generator
) -> None:
    ids = []
    for image in range(4):
        ids += [r.face_id for r in add(store, collection, unit_vectors(rng, 3), f"img-{image}")]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page, cursor = store.list_faces(collection.name, limit=3, cursor=cursor)
        pages += 1
        assert len(page) <= 3
        seen += [r.face_id for r in page]
        if pages == 2:  # deleting a face already listed must not shift later pages
            store.delete_faces(collection.name, [seen[0]])
        if cursor is None:
            break
    assert seen == ids  # indexing order, each exactly once
    assert pages == 4


def test_list_faces_end_and_empty(store: Store, collection: CollectionRecord, rng) -> None:
    assert store.list_faces(collection.name) == ([], None)
    add(store, collection, unit_vectors(rng, 2))
    page, cursor = store.list_faces(collection.name, limit=2)
    assert len(page) == 2 and cursor is None


@pytest.mark.parametrize(
    "cursor", ["", "garbage!", "djE6", "djE6YWJj", "MTIz", "x" * 500, "djE6LTE", 12]
)
def test_bad_cursor_is_invalid(store: Store, collection: CollectionRecord, cursor: object) -> None:
    with pytest.raises(InvalidParameter, match="cursor"):
        store.list_faces(collection.name, cursor=cursor)  # type: ignore[arg-type]


@pytest.mark.parametrize("limit", [0, -1, 4097, "10", 2.5])
def test_bad_limit_is_invalid(store: Store, collection: CollectionRecord, limit: object) -> None:
    with pytest.raises(InvalidParameter, match="limit"):
        store.list_faces(collection.name, limit=limit)  # type: ignore[arg-type]


def test_delete_faces(store: Store, collection: CollectionRecord, rng: np.random.Generator) -> None:
    one = add(store, collection, unit_vectors(rng, 2), "one")
    two = add(store, collection, unit_vectors(rng, 1), "two")
    unknown = str(uuid.uuid4())
    deleted = store.delete_faces(collection.name, [one[0].face_id, unknown, two[0].face_id])
    assert deleted == [one[0].face_id, two[0].face_id]
    assert store.count_faces(collection.name) == 1
    assert row_count(store, collection, "face_vectors") == 1
    assert row_count(store, collection, "images") == 1  # "two" had no faces left
    assert store.get_faces(collection.name, [one[0].face_id, one[1].face_id]) == [one[1]]
    with pytest.raises(NotFound, match=one[0].face_id):
        store.get_embedding(collection.name, one[0].face_id)
    assert store.delete_faces(collection.name, [one[0].face_id]) == []
    assert store.delete_faces(collection.name, [one[1].face_id.upper()]) == [one[1].face_id]
    assert row_count(store, collection, "images") == 0


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "", "1234", "'; DROP TABLE x; --", None, 7])
def test_malformed_face_id_is_invalid(
    store: Store, collection: CollectionRecord, bad_id: object
) -> None:
    good = str(uuid.uuid4())
    with pytest.raises(InvalidParameter, match="face id"):
        store.get_faces(collection.name, [good, bad_id])  # type: ignore[list-item]
    with pytest.raises(InvalidParameter, match="face id"):
        store.delete_faces(collection.name, [bad_id])  # type: ignore[list-item]
    with pytest.raises(InvalidParameter, match="face id"):
        store.get_embedding(collection.name, bad_id)  # type: ignore[arg-type]


def test_faces_of_a_missing_collection_are_not_found(store: Store, rng) -> None:
    with pytest.raises(NotFound, match="no-such-collection"):
        store.add_faces(
            "no-such-collection", NewImage(None, 1, 1), [new_face(unit_vectors(rng, 1)[0])]
        )
    with pytest.raises(NotFound):
        store.list_faces("no-such-collection")
    with pytest.raises(NotFound):
        store.search("no-such-collection", unit_vectors(rng, 1)[0], 1, 0.0)
