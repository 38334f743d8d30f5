"""Replica-local ANN indexes: two Search replicas (two `Store`s on one database) kept in step
through the change log, a restart that rebuilds, deleted faces never returned, and the
PostgreSQL fallback while warming and over the memory cap."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import numpy as np
import pytest
from sqlalchemy import text

from serve_app.store import CollectionRecord, EmbeddedPostgres, NewImage, Store
from serve_app.store.database import create_engine_for
from serve_app.store.vectors import PgVectorIndex
from serve_app.store.vectors.replica import LocalIndexConfig
from tests.store.conftest import new_face, unit_vectors

DIM = 16
# The bound the README states for another replica's writes (poll every 0.2 s).
VISIBLE_WITHIN_S = 1.0


def replica(postgres: EmbeddedPostgres, **config: object) -> Store:
    """One Search replica's store: local indexes for every collection, whatever its size."""
    options = {"min_faces": 0, "poll_interval_s": 0.2, **config}
    local = PgVectorIndex(LocalIndexConfig(**options))  # type: ignore[arg-type]
    return Store(create_engine_for(postgres.url), vector_indexes=[local])


@pytest.fixture
def replicas(postgres: EmbeddedPostgres, store: Store) -> Iterator[tuple[Store, Store]]:
    # `store` (the session's) has migrated the database already.
    a, b = replica(postgres), replica(postgres)
    yield a, b
    a.close()
    b.close()


@pytest.fixture
def faces(
    replicas: tuple[Store, Store],
) -> Iterator[tuple[CollectionRecord, list[str], np.ndarray]]:
    a, _ = replicas
    record = a.create_collection(f"local-{uuid.uuid4().hex[:8]}", "test", DIM)
    vectors = unit_vectors(np.random.default_rng(5), 600, DIM)
    ids = index(a, record.name, vectors)
    yield record, ids, vectors
    a.delete_collection(record.name)


def index(store: Store, name: str, vectors: np.ndarray) -> list[str]:
    ids: list[str] = []
    for start in range(0, len(vectors), 200):
        batch = [new_face(v) for v in vectors[start : start + 200]]
        ids += [r.face_id for r in store.add_faces(name, NewImage(None, 9, 9), batch)]
    return ids


def local_state(store: Store, name: str) -> dict[str, object]:
    return store.vector_stats(name)["local_index"]


def warm(store: Store, name: str) -> None:
    assert store.warm_vector_indexes([name], wait_s=30) == {name: "ready"}


def exact_top(vectors: np.ndarray, ids: list[str], query: np.ndarray, k: int) -> list[str]:
    order = np.argsort(-(vectors @ query))[:k]
    return [ids[i] for i in order]


@pytest.mark.parametrize("coarse_from", [5_000, 100], ids=["exact scan", "PQ scan"])
def test_local_index_finds_what_exact_search_finds(postgres, store, faces, coarse_from) -> None:
    record, ids, vectors = faces
    local = replica(postgres, coarse_from=coarse_from, rerank=120)
    try:
        warm(local, record.name)
        assert local_state(local, record.name)["vectors"] == len(ids)
        for query in unit_vectors(np.random.default_rng(6), 20, DIM):
            found = local.search(record.name, query, 10, -1.0)
            assert [f.face_id for f, _ in found] == exact_top(vectors, ids, query, 10)
            want = np.sort(vectors @ query)[::-1][:10]
            assert np.allclose([score for _, score in found], want, atol=1e-5)
    finally:
        local.close()


def test_a_write_on_one_replica_is_found_on_the_other_within_the_bound(replicas, faces) -> None:
    a, b = replicas
    record, _, _ = faces
    warm(a, record.name)
    warm(b, record.name)
    vector = unit_vectors(np.random.default_rng(7), 1, DIM)[0]
    (added,) = a.add_faces(record.name, NewImage(None, 9, 9), [new_face(vector)])
    written = time.monotonic()
    while True:
        found = b.search(record.name, vector, 1, 0.99)
        elapsed = time.monotonic() - written
        if found or elapsed > VISIBLE_WITHIN_S:
            break
        time.sleep(0.01)
    assert [f.face_id for f, _ in found] == [added.face_id], f"not found after {elapsed:.2f} s"
    assert elapsed <= VISIBLE_WITHIN_S
    # Found through B's own local index, which now holds it too.
    state = local_state(b, record.name)
    assert (state["state"], state["vectors"]) == ("ready", 601)


def test_a_replica_finds_its_own_write_at_once(replicas, faces) -> None:
    a, _ = replicas
    record, _, _ = faces
    warm(a, record.name)
    vector = unit_vectors(np.random.default_rng(8), 1, DIM)[0]
    (added,) = a.add_faces(record.name, NewImage(None, 9, 9), [new_face(vector)])
    assert [f.face_id for f, _ in a.search(record.name, vector, 1, 0.99)] == [added.face_id]


def test_a_deleted_face_is_never_returned(postgres, replicas, faces) -> None:
    a, _ = replicas
    record, ids, vectors = faces
    # A replica that reads the change log rarely still holds the face in its index...
    slow = replica(postgres, poll_interval_s=60.0)
    try:
        warm(slow, record.name)
        warm(a, record.name)
        assert a.delete_faces(record.name, [ids[3]]) == [ids[3]]
        assert local_state(slow, record.name)["vectors"] == len(ids)
        # ...and never returns it: hits are checked against the committed faces.
        for store in (slow, a):
            found = store.search(record.name, vectors[3], 10, -1.0)
            assert ids[3] not in [f.face_id for f, _ in found]
            assert len(found) == 10
        assert local_state(a, record.name)["vectors"] == len(ids) - 1
    finally:
        slow.close()


def test_a_restarted_replica_rebuilds_and_finds_everything(postgres, replicas, faces) -> None:
    a, _ = replicas
    record, ids, vectors = faces
    warm(a, record.name)
    later = unit_vectors(np.random.default_rng(9), 50, DIM)
    ids += index(a, record.name, later)
    a.delete_faces(record.name, ids[:10])
    a.close()
    restarted = replica(postgres)
    try:
        warm(restarted, record.name)
        assert local_state(restarted, record.name)["vectors"] == len(ids) - 10
        alive, alive_ids = np.concatenate([vectors, later])[10:], ids[10:]
        for i in range(0, len(alive_ids), 61):
            found = restarted.search(record.name, alive[i], 1, -1.0)
            assert [f.face_id for f, _ in found] == [alive_ids[i]]
    finally:
        restarted.close()


def test_search_falls_back_to_postgres_while_the_index_warms(postgres, replicas, faces) -> None:
    _, b = replicas
    record, ids, vectors = faces
    assert local_state(b, record.name)["state"] == "cold"
    # The first search starts the build and is answered by PostgreSQL meanwhile.
    found = b.search(record.name, vectors[0], 5, -1.0)
    assert local_state(b, record.name)["state"] in ("warming", "ready")
    assert [f.face_id for f, _ in found] == exact_top(vectors, ids, vectors[0], 5)


def test_over_the_memory_cap_search_stays_in_postgres(postgres, store, faces) -> None:
    record, ids, vectors = faces
    capped = replica(postgres, max_bytes=1024)
    try:
        assert capped.warm_vector_indexes([record.name], wait_s=30) == {
            record.name: "over memory cap"
        }
        found = capped.search(record.name, vectors[7], 3, -1.0)
        assert [f.face_id for f, _ in found] == exact_top(vectors, ids, vectors[7], 3)
        assert local_state(capped, record.name) == {"state": "over memory cap"}
    finally:
        capped.close()


def test_small_collections_get_no_local_index(postgres, store, faces) -> None:
    record, _, _ = faces
    default = replica(postgres, min_faces=5_000)
    try:
        assert default.warm_vector_indexes([record.name], wait_s=1) == {record.name: "cold"}
    finally:
        default.close()


def test_persons_are_searched_through_the_local_index(replicas, faces) -> None:
    a, b = replicas
    record, ids, vectors = faces
    a.create_person(record.name, "ada")
    a.associate_faces(record.name, "ada", ids[100:103], -1.0, 100)
    a.create_person(record.name, "bob")
    a.associate_faces(record.name, "bob", ids[200:202], -1.0, 100)
    warm(b, record.name)
    found = b.search_persons(record.name, vectors[101], 2, -1.0)
    assert [p.person_id for p, _ in found][0] == "ada"
    assert {p.person_id for p, _ in found} == {"ada", "bob"}
    assert found[0][1] == pytest.approx(1.0, abs=1e-5)
    found = b.search_persons(record.name, vectors[101], 1, -1.0, exclude_person="ada")
    assert [p.person_id for p, _ in found] == ["bob"]


def test_a_deleted_collection_leaves_no_local_index(postgres, replicas) -> None:
    a, b = replicas
    record = a.create_collection(f"local-{uuid.uuid4().hex[:8]}", "test", DIM)
    index(a, record.name, unit_vectors(np.random.default_rng(3), 20, DIM))
    warm(b, record.name)
    a.delete_collection(record.name)
    deadline = time.monotonic() + 5
    while b._indexes["pgvector"].local.state(record) != "cold" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert b._indexes["pgvector"].local.state(record) == "cold"


def test_an_index_that_grows_past_the_cap_falls_back_to_postgres(postgres, store, faces) -> None:
    record, ids, vectors = faces
    config = LocalIndexConfig()
    fits = len(ids) * config.bytes_per_vector(DIM) + 4096 + 5_000  # room for ~50 more
    capped = replica(postgres, max_bytes=fits)
    try:
        warm(capped, record.name)
        more = unit_vectors(np.random.default_rng(11), 200, DIM)
        more_ids = index(capped, record.name, more)
        found = capped.search(record.name, more[5], 1, -1.0)  # applies the write first
        assert local_state(capped, record.name) == {"state": "over memory cap"}
        assert [f.face_id for f, _ in found] == [more_ids[5]]
    finally:
        capped.close()


def test_the_change_log_keeps_a_day(replicas, faces) -> None:
    a, _ = replicas
    record, _, _ = faces
    warm(a, record.name)
    local = a._indexes["pgvector"].local
    s = record.schema_name
    with a.engine.begin() as conn:
        conn.execute(text(f"UPDATE {s}.vector_changes SET created_at = now() - interval '2 days'"))
        conn.execute(text(f"UPDATE {s}.vector_changes SET created_at = now() WHERE face_seq < 5"))
    local._prune_quietly(local._ready[record.id])
    with a.engine.begin() as conn:
        kept = conn.execute(text(f"SELECT count(*) FROM {s}.vector_changes")).scalar_one()
    assert kept == 4
