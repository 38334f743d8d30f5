"""Nearest-neighbour search against numpy's exact cosine ranking, on both search paths."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from sqlalchemy import event

from serve_app.errors import InvalidParameter
from serve_app.store import CollectionRecord, NewImage, Store
from serve_app.store.vectors import pgvector
from tests.store.conftest import new_face, unit_vectors

SEARCH_DIM = 32


@pytest.fixture
def search_collection(store: Store) -> Iterator[CollectionRecord]:
    import uuid

    record = store.create_collection(f"search-{uuid.uuid4().hex[:8]}", "test", SEARCH_DIM)
    yield record
    store.delete_collection(record.name)


def index(store: Store, collection: CollectionRecord, vectors: np.ndarray) -> list[str]:
    ids: list[str] = []
    for start in range(0, len(vectors), 250):
        batch = [new_face(v) for v in vectors[start : start + 250]]
        ids += [r.face_id for r in store.add_faces(collection.name, NewImage(None, 9, 9), batch)]
    return ids


class Statements:
    """Records the SQL the store sends, to tell which search path ran."""

    def __init__(self, store: Store) -> None:
        self.sql: list[str] = []
        self._engine = store.engine

    def __enter__(self) -> Statements:
        event.listen(self._engine, "before_cursor_execute", self._record)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self._engine, "before_cursor_execute", self._record)

    def _record(self, conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
        self.sql.append(statement % parameters if isinstance(parameters, dict) else statement)

    def used(self, setting: str) -> bool:
        return any(setting in s for s in self.sql)


def exact_top(vectors: np.ndarray, query: np.ndarray, k: int) -> list[int]:
    return list(np.argsort(-(vectors @ query), kind="stable")[:k])


def test_small_collection_search_is_exact(
    store: Store, search_collection: CollectionRecord, rng: np.random.Generator
) -> None:
    vectors = unit_vectors(rng, 300, SEARCH_DIM)
    ids = index(store, search_collection, vectors)
    for query in unit_vectors(rng, 5, SEARCH_DIM):
        with Statements(store) as statements:
            hits = store.search(search_collection.name, query, 10, -1.0)
        assert statements.used("enable_indexscan") and not statements.used("hnsw.ef_search")
        assert [face.face_id for face, _ in hits] == [ids[i] for i in exact_top(vectors, query, 10)]
        expected = np.sort(vectors @ query)[::-1][:10]
        np.testing.assert_allclose([score for _, score in hits], expected, atol=1e-5)


def test_large_collection_search_uses_hnsw_with_high_recall(
    store: Store,
    search_collection: CollectionRecord,
    rng: np.random.Generator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pgvector, "EXACT_SEARCH_BELOW", 200)
    vectors = unit_vectors(rng, 2000, SEARCH_DIM)
    ids = index(store, search_collection, vectors)
    recalls = []
    for query in unit_vectors(rng, 20, SEARCH_DIM):
        with Statements(store) as statements:
            hits = store.search(search_collection.name, query, 10, -1.0)
        assert statements.used("hnsw.ef_search") and not statements.used("enable_indexscan")
        scores = [score for _, score in hits]
        assert scores == sorted(scores, reverse=True)
        truth = {ids[i] for i in exact_top(vectors, query, 10)}
        recalls.append(len(truth & {face.face_id for face, _ in hits}) / 10)
    assert np.mean(recalls) >= 0.95


def test_a_stored_face_finds_itself_first(
    store: Store, search_collection: CollectionRecord, rng: np.random.Generator
) -> None:
    vectors = unit_vectors(rng, 50, SEARCH_DIM)
    ids = index(store, search_collection, vectors)
    face, score = store.search(search_collection.name, vectors[7] * 3.0, 1, 0.0)[0]
    assert face.face_id == ids[7]
    assert score == pytest.approx(1.0, abs=1e-6)


def test_min_cosine_and_k(
    store: Store, search_collection: CollectionRecord, rng: np.random.Generator
) -> None:
    vectors = unit_vectors(rng, 200, SEARCH_DIM)
    ids = index(store, search_collection, vectors)
    query = vectors[0]
    similarities = vectors @ query
    for k, min_cosine in [(1, -1.0), (5, -1.0), (200, 0.2), (50, 0.2), (10, 0.99), (500, -1.0)]:
        hits = store.search(search_collection.name, query, k, min_cosine)
        above = [i for i in exact_top(vectors, query, k) if similarities[i] >= min_cosine - 1e-6]
        assert [f.face_id for f, _ in hits] == [ids[i] for i in above]
        assert all(score >= min_cosine for _, score in hits)
    assert len(store.search(search_collection.name, query, 500, -1.0)) == 200


@pytest.mark.parametrize(
    ("vector", "k", "min_cosine", "message"),
    [
        (np.ones(SEARCH_DIM + 1), 10, 0.0, "dimensional"),
        (np.zeros(SEARCH_DIM), 10, 0.0, "zeros"),
        (np.full(SEARCH_DIM, np.inf), 10, 0.0, "finite"),
        (np.ones(SEARCH_DIM), 0, 0.0, "k"),
        (np.ones(SEARCH_DIM), 5000, 0.0, "k"),
        (np.ones(SEARCH_DIM), 10, 1.5, "min_cosine"),
        (np.ones(SEARCH_DIM), 10, float("nan"), "min_cosine"),
    ],
)
def test_bad_search_parameters(
    store: Store,
    search_collection: CollectionRecord,
    vector: np.ndarray,
    k: int,
    min_cosine: float,
    message: str,
) -> None:
    with pytest.raises(InvalidParameter, match=message):
        store.search(search_collection.name, vector, k, min_cosine)
