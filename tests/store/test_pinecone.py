"""The Pinecone vector backend: the real `pinecone` SDK against a server that speaks Pinecone's
REST protocol (tests/pinecone_server.py), with the embedded PostgreSQL as the source of truth.

What a user would notice: faces found in the right order with the right scores, deletes that
stick, nothing lost when Pinecone fails between the two writes, nothing left behind in
Pinecone, and storage removed behind the service's back named and put back.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
import warnings
from collections.abc import Iterator

import numpy as np
import pytest
from jsonschema import Draft202012Validator
from sqlalchemy import event, text

from serve_app.config import Settings
from serve_app.errors import InvalidParameter, NotFound, VectorStoreUnavailable
from serve_app.store import CollectionRecord, EmbeddedPostgres, NewImage, Store
from serve_app.store.vectors import PgVectorIndex, vector_indexes_for
from serve_app.store.vectors.pinecone import PineconeIndex
from serve_app.store.versions import collection_head, collection_revision
from tests.pinecone_server import PineconeServer
from tests.store.conftest import DIM, new_face, unit_vectors

PREFIX = "ftest"


@pytest.fixture(scope="module")
def pinecone() -> Iterator[PineconeServer]:
    with PineconeServer() as server:
        yield server


@pytest.fixture(scope="module")
def pc_store(postgres: EmbeddedPostgres, pinecone: PineconeServer) -> Iterator[Store]:
    index = PineconeIndex(pinecone.api_key, pinecone.url, PREFIX)
    store = Store.open(postgres.url, vector_indexes=[index])
    yield store
    store.close()


@pytest.fixture
def pc_collection(pc_store: Store) -> Iterator[CollectionRecord]:
    record = pc_store.create_collection(
        f"pc-{uuid.uuid4().hex[:10]}", "test-model", DIM, vector_backend="pinecone"
    )
    yield record
    with contextlib.suppress(NotFound, VectorStoreUnavailable):
        pc_store.delete_collection(record.name)


def index_name(collection: CollectionRecord) -> str:
    return f"{PREFIX}-{uuid.UUID(collection.id).hex}"


def add(
    store: Store, collection: CollectionRecord, vectors: np.ndarray, image: str | None = None
) -> list[str]:
    faces = [new_face(v) for v in vectors]
    return [r.face_id for r in store.add_faces(collection.name, NewImage(image, 9, 9), faces)]


def found(store: Store, collection: CollectionRecord, query: np.ndarray, k: int = 10) -> list:
    return [face.face_id for face, _ in store.search(collection.name, query, k, -1.0)]


def pinecone_ids(pinecone: PineconeServer, collection: CollectionRecord) -> set[str]:
    return set(pinecone.vectors(index_name(collection)))


# -- creating and deleting collections --------------------------------------------------------


def test_a_pinecone_collection_gets_its_own_serverless_cosine_index(
    pc_store: Store, pc_collection: CollectionRecord, pinecone: PineconeServer
) -> None:
    name = index_name(pc_collection)
    assert len(name) <= 45
    state = pinecone.indexes[name]
    assert (state.dimension, state.metric) == (DIM, "cosine")
    assert (state.cloud, state.region) == ("aws", "us-east-1")
    described = pc_store.get_collection(pc_collection.name)
    assert described.vector_backend == "pinecone"
    assert described.vector_options == {"cloud": "aws", "region": "us-east-1", "index_name": name}
    assert pc_store.storage_problems(pc_collection.name) == []


def test_vector_options_choose_the_cloud_and_region_and_are_checked(
    pc_store: Store, pinecone: PineconeServer
) -> None:
    name = f"pc-eu-{uuid.uuid4().hex[:8]}"
    record = pc_store.create_collection(
        name,
        "test-model",
        DIM,
        vector_backend="pinecone",
        vector_options={"cloud": "gcp", "region": "europe-west4"},
    )
    try:
        state = pinecone.indexes[index_name(record)]
        assert (state.cloud, state.region) == ("gcp", "europe-west4")
    finally:
        pc_store.delete_collection(name)
    bad = [{"cloud": "ibm"}, {"region": "Not A Region"}, {"replicas": 2}]
    for options in bad:
        with pytest.raises(InvalidParameter):
            pc_store.create_collection(
                f"pc-bad-{uuid.uuid4().hex[:8]}",
                "m",
                DIM,
                vector_backend="pinecone",
                vector_options=options,
            )
    with pytest.raises(InvalidParameter, match="takes no vector options"):
        pc_store.create_collection("pg-with-options", "m", DIM, vector_options={"cloud": "aws"})
    with pytest.raises(NotFound):
        pc_store.get_collection("pg-with-options")


def test_an_unconfigured_backend_is_refused_naming_the_available_ones(store: Store) -> None:
    with pytest.raises(InvalidParameter, match=r"'pinecone' is not configured.*pgvector"):
        store.create_collection("needs-pinecone", "m", DIM, vector_backend="pinecone")


def test_deleting_the_collection_deletes_its_index(
    pc_store: Store, pc_collection: CollectionRecord, pinecone: PineconeServer, rng
) -> None:
    add(pc_store, pc_collection, unit_vectors(rng, 3))
    pc_store.delete_collection(pc_collection.name)
    assert index_name(pc_collection) not in pinecone.indexes
    with pytest.raises(NotFound):
        pc_store.get_collection(pc_collection.name)


def test_a_collection_whose_index_pinecone_will_not_delete_is_kept_whole(
    pc_store: Store, pc_collection: CollectionRecord, pinecone: PineconeServer, rng
) -> None:
    ids = add(pc_store, pc_collection, unit_vectors(rng, 2))
    pinecone.indexes[index_name(pc_collection)].deletion_protection = "enabled"
    with pytest.raises(VectorStoreUnavailable, match="Deletion protection"):
        pc_store.delete_collection(pc_collection.name)
    assert [f.face_id for f in pc_store.get_faces(pc_collection.name, ids)] == ids
    pinecone.indexes[index_name(pc_collection)].deletion_protection = "disabled"


def test_a_wrong_api_key_is_a_clear_error_and_leaves_nothing_behind(
    postgres: EmbeddedPostgres, pinecone: PineconeServer
) -> None:
    before = set(pinecone.indexes)
    store = Store.open(
        postgres.url, vector_indexes=[PineconeIndex("not-the-key", pinecone.url, PREFIX)]
    )
    try:
        with pytest.raises(VectorStoreUnavailable, match="rejected the API key") as raised:
            store.create_collection("wrong-key", "m", DIM, vector_backend="pinecone")
        assert "not-the-key" not in raised.value.message
        assert raised.value.http_status == 503
        with pytest.raises(NotFound):
            store.get_collection("wrong-key")
        assert set(pinecone.indexes) == before
    finally:
        store.close()


def test_settings_decide_which_backends_exist(pinecone: PineconeServer) -> None:
    assert [i.name for i in vector_indexes_for(Settings())] == ["pgvector"]
    configured = vector_indexes_for(
        Settings(pinecone_api_key=pinecone.api_key, pinecone_host=pinecone.url)
    )
    assert [i.name for i in configured] == ["pgvector", "pinecone"]
    configured[1].close()
    assert "secret" not in repr(Settings(pinecone_api_key="secret"))
    for prefix in ("Faceserve", "much-too-long-a-prefix", "-x"):
        with pytest.raises(InvalidParameter, match="prefix"):
            PineconeIndex(pinecone.api_key, pinecone.url, prefix)


# -- indexing, searching, deleting ------------------------------------------------------------


def test_search_finds_faces_in_exact_cosine_order_with_scores_and_threshold(
    pc_store: Store, pc_collection: CollectionRecord, rng
) -> None:
    vectors = unit_vectors(rng, 60)
    ids = add(pc_store, pc_collection, vectors[:30], "first") + add(
        pc_store, pc_collection, vectors[30:]
    )
    for query in unit_vectors(rng, 4):
        expected = np.argsort(-(vectors @ query), kind="stable")[:10]
        hits = pc_store.search(pc_collection.name, query, 10, -1.0)
        assert [face.face_id for face, _ in hits] == [ids[i] for i in expected]
        np.testing.assert_allclose([s for _, s in hits], (vectors @ query)[expected], atol=1e-5)
        threshold = float((vectors @ query)[expected][4])
        kept = pc_store.search(pc_collection.name, query, 10, threshold - 1e-6)
        assert [face.face_id for face, _ in kept] == [ids[i] for i in expected[:5]]


def test_vectors_carry_their_face_metadata_and_go_in_batches_of_100(
    pc_store: Store, pc_collection: CollectionRecord, pinecone: PineconeServer, rng
) -> None:
    named = add(pc_store, pc_collection, unit_vectors(rng, 1), "photo-1.jpg")[0]
    many = add(pc_store, pc_collection, unit_vectors(rng, 250))
    stored = pinecone.vectors(index_name(pc_collection))
    assert stored[named].metadata == {
        "face_id": named,
        "collection_id": pc_collection.id,
        "external_image_id": "photo-1.jpg",
    }
    # No external image id: the key is left out, as Pinecone refuses null values.
    assert stored[many[0]].metadata == {"face_id": many[0], "collection_id": pc_collection.id}
    batches = pinecone.indexes[index_name(pc_collection)].upsert_batches
    assert sum(batches) == 251 and max(batches) <= 100


def test_deleted_faces_leave_pinecone_and_are_counted_out(
    pc_store: Store, pc_collection: CollectionRecord, pinecone: PineconeServer, rng
) -> None:
    vectors = unit_vectors(rng, 5)
    ids = add(pc_store, pc_collection, vectors)
    assert pc_store.delete_faces(pc_collection.name, ids[:2]) == ids[:2]
    assert pinecone_ids(pinecone, pc_collection) == set(ids[2:])
    assert ids[0] not in found(pc_store, pc_collection, vectors[0])
    stats = pc_store.vector_stats(pc_collection.name)
    assert stats["vectors"] == stats["pinecone_vectors"] == 3
    assert (stats["pending_upserts"], stats["pending_deletes"]) == (0, 0)
    assert pc_store.count_faces(pc_collection.name) == 3


def test_embeddings_are_read_from_postgresql_even_while_pinecone_is_down(
    pc_store: Store, pc_collection: CollectionRecord, pinecone: PineconeServer, rng
) -> None:
    vectors = unit_vectors(rng, 2)
    ids = add(pc_store, pc_collection, vectors)
    with pinecone.refuse_data_plane():
        np.testing.assert_array_equal(
            pc_store.get_embedding(pc_collection.name, ids[1]), vectors[1]
        )


def test_persons_are_searched_through_pinecone(
    pc_store: Store, pc_collection: CollectionRecord, rng
) -> None:
    vectors = unit_vectors(rng, 6)
    ids = add(pc_store, pc_collection, vectors)
    for person, faces in (("ann", ids[:2]), ("bob", ids[2:4])):
        pc_store.create_person(pc_collection.name, person)
        pc_store.associate_faces(pc_collection.name, person, faces, -1.0, 100)
    hits = pc_store.search_persons(pc_collection.name, vectors[3], 5, -1.0)
    assert [p.person_id for p, _ in hits] == ["bob", "ann"]
    assert hits[0][1] == pytest.approx(1.0, abs=1e-5)
    without_bob = pc_store.search_persons(pc_collection.name, vectors[3], 5, -1.0, "bob")
    assert [p.person_id for p, _ in without_bob] == ["ann"]


# -- failures between PostgreSQL and Pinecone ---------------------------------------------------


def test_a_failed_push_keeps_the_face_and_repair_makes_it_searchable(
    pc_store: Store, pc_collection: CollectionRecord, pinecone: PineconeServer, rng
) -> None:
    vectors = unit_vectors(rng, 3)
    with pinecone.refuse_data_plane():
        ids = add(pc_store, pc_collection, vectors)  # acknowledged: durable in PostgreSQL
        with pytest.raises(VectorStoreUnavailable, match="query Pinecone index"):
            pc_store.search(pc_collection.name, vectors[0], 3, -1.0)
    assert [f.face_id for f in pc_store.get_faces(pc_collection.name, ids)] == ids
    assert pc_store.count_faces(pc_collection.name) == 3
    assert found(pc_store, pc_collection, vectors[0]) == []  # not in Pinecone yet
    assert pc_store.vector_stats(pc_collection.name)["pending_upserts"] == 3

    done = pc_store.repair_storage(pc_collection.name)
    assert done == [f"pushed 3 pending vector(s) to Pinecone index {index_name(pc_collection)}"]
    assert found(pc_store, pc_collection, vectors[0], 1) == [ids[0]]
    assert pc_store.repair_storage(pc_collection.name) == []  # idempotent


def test_a_crash_before_the_push_is_repaired_by_the_periodic_pass(
    pc_store: Store,
    pc_collection: CollectionRecord,
    rng,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    index = pc_store._indexes["pinecone"]
    vectors = unit_vectors(rng, 2)
    with monkeypatch.context() as patched:
        # The process dies right after the commit: the push never starts.
        patched.setattr(index, "after_commit", lambda engine, collection: None)
        ids = add(pc_store, pc_collection, vectors)
    assert found(pc_store, pc_collection, vectors[1]) == []
    done = pc_store.repair_all()
    assert done[pc_collection.name] == [
        f"pushed 2 pending vector(s) to Pinecone index {index_name(pc_collection)}"
    ]
    assert found(pc_store, pc_collection, vectors[1], 1) == [ids[1]]


def test_pending_writes_stuck_for_a_minute_are_a_storage_problem(
    pc_store: Store, pc_collection: CollectionRecord, pinecone: PineconeServer, rng
) -> None:
    with pinecone.refuse_data_plane():
        ids = add(pc_store, pc_collection, unit_vectors(rng, 2))
    assert pc_store.storage_problems(pc_collection.name) == []  # young: a push may be on it
    schema = pc_collection.schema_name
    with pc_store.engine.begin() as conn:
        conn.execute(
            text(f"UPDATE {schema}.pinecone_vectors SET changed_at = now() - interval '2 min'")
        )
    problems = pc_store.storage_problems(pc_collection.name)
    assert problems == [
        f"2 face vector(s) waiting more than 60 s to reach Pinecone index "
        f"{index_name(pc_collection)}"
    ]
    pc_store.repair_storage(pc_collection.name)
    assert pc_store.storage_problems(pc_collection.name) == []
    assert pinecone_ids(pinecone, pc_collection) == set(ids)


def test_a_failed_delete_push_leaves_no_orphan_after_repair(
    pc_store: Store, pc_collection: CollectionRecord, pinecone: PineconeServer, rng
) -> None:
    vectors = unit_vectors(rng, 3)
    ids = add(pc_store, pc_collection, vectors)
    with pinecone.refuse_data_plane():
        assert pc_store.delete_faces(pc_collection.name, [ids[0]]) == [ids[0]]
    assert ids[0] in pinecone_ids(pinecone, pc_collection)  # still in Pinecone...
    assert ids[0] not in found(pc_store, pc_collection, vectors[0])  # ...but never returned
    done = pc_store.repair_storage(pc_collection.name)
    assert done == [f"removed 1 deleted face(s) from Pinecone index {index_name(pc_collection)}"]
    assert pinecone_ids(pinecone, pc_collection) == set(ids[1:])


def test_repair_deletes_vectors_pinecone_holds_for_no_face(
    pc_store: Store, pc_collection: CollectionRecord, pinecone: PineconeServer, rng
) -> None:
    ids = add(pc_store, pc_collection, unit_vectors(rng, 2))
    stray = [str(uuid.uuid4()), "not-a-face-id"]
    for vector_id, vector in zip(stray, unit_vectors(rng, 2), strict=True):
        pinecone.put_vector(index_name(pc_collection), vector_id, vector.tolist())
        # A search that meets them neither fails nor returns them.
        assert set(found(pc_store, pc_collection, vector)) == set(ids)
    done = pc_store.repair_storage(pc_collection.name)
    assert done == [
        f"deleted 2 orphaned vector(s) (no face in PostgreSQL) from Pinecone index "
        f"{index_name(pc_collection)}"
    ]
    assert pinecone_ids(pinecone, pc_collection) == set(ids)


def test_the_periodic_pass_finds_orphans_when_the_counts_disagree(
    pc_store: Store, pc_collection: CollectionRecord, pinecone: PineconeServer, rng
) -> None:
    ids = add(pc_store, pc_collection, unit_vectors(rng, 2))
    pinecone.put_vector(index_name(pc_collection), str(uuid.uuid4()), [1.0] * DIM)
    assert pc_store.repair_all()[pc_collection.name] == [
        f"deleted 1 orphaned vector(s) (no face in PostgreSQL) from Pinecone index "
        f"{index_name(pc_collection)}"
    ]
    assert pinecone_ids(pinecone, pc_collection) == set(ids)


# -- storage removed behind the service's back ------------------------------------------------


def test_an_index_deleted_behind_our_back_is_named_recreated_and_refilled(
    pc_store: Store, pc_collection: CollectionRecord, pinecone: PineconeServer, rng
) -> None:
    vectors = unit_vectors(rng, 120)
    ids = add(pc_store, pc_collection, vectors)
    name = index_name(pc_collection)
    pinecone.drop_index(name)
    assert pc_store.storage_problems(pc_collection.name) == [f"Pinecone index {name} is missing"]
    with pytest.raises(VectorStoreUnavailable, match="does not exist"):
        pc_store.search(pc_collection.name, vectors[0], 1, -1.0)

    done = pc_store.repair_storage(pc_collection.name)
    assert done == [
        f"recreated Pinecone index {name}; 120 vector(s) queued to refill it from PostgreSQL",
        f"pushed 120 pending vector(s) to Pinecone index {name}",
    ]
    assert pinecone.indexes[name].dimension == DIM
    assert pinecone_ids(pinecone, pc_collection) == set(ids)
    assert found(pc_store, pc_collection, vectors[7], 1) == [ids[7]]
    assert pc_store.storage_problems(pc_collection.name) == []


def test_a_recreated_index_is_refilled_at_once_even_with_its_old_host_cached(
    pc_store: Store, pc_collection: CollectionRecord, pinecone: PineconeServer, rng
) -> None:
    # No call between the drop and the repair: the client of the old host is still cached,
    # and the push must go to the new index's host, not fail on the old one.
    vectors = unit_vectors(rng, 5)
    ids = add(pc_store, pc_collection, vectors)
    name = index_name(pc_collection)
    pinecone.drop_index(name)

    done = pc_store.repair_storage(pc_collection.name)
    assert done[-1] == f"pushed 5 pending vector(s) to Pinecone index {name}"
    assert pinecone_ids(pinecone, pc_collection) == set(ids)


def drop_schema(store: Store, collection: CollectionRecord) -> None:
    with store.engine.begin() as conn:
        conn.execute(text(f"DROP SCHEMA {collection.schema_name} CASCADE"))


def test_a_dropped_schema_of_a_pinecone_collection_is_recreated_and_its_vectors_swept(
    pc_store: Store, pc_collection: CollectionRecord, pinecone: PineconeServer, rng
) -> None:
    add(pc_store, pc_collection, unit_vectors(rng, 3))
    drop_schema(pc_store, pc_collection)
    schema = pc_collection.schema_name
    problems = pc_store.storage_problems(pc_collection.name)
    assert f"schema {schema} is missing" in problems
    assert f"table {schema}.pinecone_vectors is missing" in problems

    done = pc_store.repair_storage(pc_collection.name)
    assert done[0] == f"recreated schema {schema} (revision {collection_head()}, empty)"
    assert any("deleted 3 orphaned vector(s)" in d for d in done)
    assert pc_store.storage_problems(pc_collection.name) == []
    # PostgreSQL is the source of truth: its faces are gone, so are the vectors.
    assert pc_store.count_faces(pc_collection.name) == 0
    assert pinecone_ids(pinecone, pc_collection) == set()
    vector = unit_vectors(rng, 1)
    fresh = add(pc_store, pc_collection, vector)
    assert found(pc_store, pc_collection, vector[0]) == fresh


def test_a_dropped_schema_of_a_pgvector_collection_is_recreated(
    store: Store, collection: CollectionRecord, rng
) -> None:
    add(store, collection, unit_vectors(rng, 2))
    drop_schema(store, collection)
    schema = collection.schema_name
    problems = store.storage_problems(collection.name)
    assert problems[0] == f"schema {schema} is missing"
    assert f"vector table {schema}.face_vectors is missing" in problems
    done = store.repair_storage(collection.name)
    assert done == [
        f"recreated schema {schema} (revision {collection_head()}, empty)",
        f"created vector table {schema}.face_vectors",
        f"created HNSW index {schema}.face_vectors_embedding_hnsw",
    ]
    assert store.storage_problems(collection.name) == []
    assert store.repair_storage(collection.name) == []
    with store.engine.connect() as conn:
        assert collection_revision(conn, schema) == collection_head()
    vector = unit_vectors(rng, 1)
    fresh = add(store, collection, vector)
    assert found(store, collection, vector[0]) == fresh


def test_a_dropped_vector_table_is_named_and_recreated(
    store: Store, collection: CollectionRecord, rng
) -> None:
    add(store, collection, unit_vectors(rng, 2))
    with store.engine.begin() as conn:
        conn.execute(text(f"DROP TABLE {collection.schema_name}.face_vectors"))
    where = f"{collection.schema_name}.face_vectors"
    assert store.storage_problems(collection.name) == [f"vector table {where} is missing"]
    done = store.repair_storage(collection.name)
    assert done[0] == f"created vector table {where}"
    assert "index their images again" in done[-1]  # those two faces lost their vectors
    assert store.storage_problems(collection.name) == []


def test_a_dropped_metadata_table_and_index_are_rebuilt_from_the_definition(
    store: Store, collection: CollectionRecord, rng
) -> None:
    ids = add(store, collection, unit_vectors(rng, 2))
    schema = collection.schema_name
    with store.engine.begin() as conn:
        conn.execute(text(f"DROP TABLE {schema}.request_tokens"))
        conn.execute(text(f"DROP INDEX {schema}.faces_person_id"))
    assert store.storage_problems(collection.name) == [f"table {schema}.request_tokens is missing"]
    assert store.repair_storage(collection.name) == [
        f"recreated index {schema}.faces_person_id",
        f"recreated table {schema}.request_tokens (empty)",
        f"recreated index {schema}.request_tokens_created_at",
    ]
    assert store.storage_problems(collection.name) == []
    assert store.repair_storage(collection.name) == []
    # The faces stayed; retried writes replay again, and persons use the rebuilt index.
    person = store.create_person(collection.name, "p", request_token="t")
    assert store.create_person(collection.name, "p", request_token="t") == person
    assert store.associate_faces(collection.name, "p", ids, -1, 10).changed == ids


def test_a_lost_postgresql_copy_of_the_vectors_is_copied_back_from_pinecone(
    pc_store: Store, pc_collection: CollectionRecord, rng
) -> None:
    vectors = unit_vectors(rng, 3)
    ids = add(pc_store, pc_collection, vectors)
    schema = pc_collection.schema_name
    with pc_store.engine.begin() as conn:
        conn.execute(text(f"DROP TABLE {schema}.pinecone_vectors"))
    assert pc_store.storage_problems(pc_collection.name) == [
        f"table {schema}.pinecone_vectors is missing"
    ]
    done = pc_store.repair_storage(pc_collection.name)
    assert done[-1] == f"copied 3 vector(s) back from Pinecone index {index_name(pc_collection)}"
    assert pc_store.storage_problems(pc_collection.name) == []
    np.testing.assert_allclose(pc_store.get_embedding(pc_collection.name, ids[2]), vectors[2])
    assert found(pc_store, pc_collection, vectors[2], 1) == [ids[2]]
    assert pc_store.vector_stats(pc_collection.name)["pending_upserts"] == 0


def test_storage_of_an_unknown_collection_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.storage_problems("no-such-collection")
    with pytest.raises(NotFound):
        store.repair_storage("no-such-collection")


def test_repair_beside_traffic_loses_nothing_and_leaves_nothing(
    pc_store: Store, pc_collection: CollectionRecord, pinecone: PineconeServer, rng
) -> None:
    vectors = unit_vectors(rng, 40)
    kept: list[str] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def repair() -> None:
        try:
            while not stop.is_set():
                pc_store.repair_storage(pc_collection.name)
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    repairer = threading.Thread(target=repair)
    repairer.start()
    try:
        for n in range(0, 40, 4):
            ids = add(pc_store, pc_collection, vectors[n : n + 4])
            pc_store.delete_faces(pc_collection.name, ids[:1])
            kept += ids[1:]
    finally:
        stop.set()
        repairer.join()
    assert errors == []
    pc_store.repair_storage(pc_collection.name)
    assert pinecone_ids(pinecone, pc_collection) == set(kept)
    assert found(pc_store, pc_collection, vectors[5], 1) == [kept[3]]


def test_pgvector_is_still_the_default(store: Store, collection: CollectionRecord) -> None:
    assert collection.vector_backend == "pgvector" and collection.vector_options == {}
    assert isinstance(store._indexes["pgvector"], PgVectorIndex)
    assert store.storage_problems(collection.name) == []


# -- what a REST client sees ------------------------------------------------------------------


def test_over_rest_an_outage_keeps_indexed_faces_and_searches_answer_503(
    pc_store: Store, pinecone: PineconeServer, pack, settings, t1_bytes: bytes
) -> None:
    from serve_app.api import build_rest_app
    from serve_app.service.ports import LocalPipeline, LocalStorage
    from serve_app.service.services import Services

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Starlette asks for httpx2
        from starlette.testclient import TestClient

    pipeline = LocalPipeline(pack, settings.image_limits)
    service = Services.build(LocalStorage(pc_store), {pack.name: pipeline}, pack.name)
    name = f"rest-pc-{uuid.uuid4().hex[:8]}"
    image = {"image": ("t1.jpg", t1_bytes)}
    with TestClient(build_rest_app(service)) as client:
        document = client.get("/openapi.json").json()
        body = {
            "name": name,
            "vector_backend": "pinecone",
            "vector_options": {"region": "eu-west-1"},
        }
        created = client.post("/v1/collections", json=body)
        assert created.status_code == 201, created.text
        assert created.json()["vector_backend"] == "pinecone"
        with pinecone.refuse_data_plane():
            indexed = client.post(f"/v1/collections/{name}/faces", files=image)
            assert indexed.status_code == 200, indexed.text  # stored: acknowledged
            searched = client.post(f"/v1/collections/{name}/search", files=image)
        assert searched.status_code == 503
        assert searched.json()["error"]["code"] == "vector_store_unavailable"
        assert "Pinecone" in searched.json()["error"]["message"]
        assert "Traceback" not in searched.text
        documented = document["paths"]["/v1/collections/{name}/search"]["post"]["responses"]
        schema = documented["503"]["content"]["application/json"]["schema"]
        Draft202012Validator({**schema, "components": document["components"]}).validate(
            searched.json()
        )
        ids = {face["face_id"] for face in indexed.json()["indexed"]}
        assert len(ids) == 6
        assert client.get(f"/v1/collections/{name}").json()["face_count"] == 6

        pc_store.repair_storage(name)
        matches = client.post(f"/v1/collections/{name}/search", files=image).json()["matches"]
        assert matches[0]["face"]["face_id"] in ids and matches[0]["similarity"] > 99
        record = pc_store.get_collection(name)
        assert pinecone.indexes[index_name(record)].region == "eu-west-1"
        assert client.delete(f"/v1/collections/{name}").status_code == 204
        assert index_name(record) not in pinecone.indexes


def test_an_index_made_for_a_create_that_failed_to_commit_is_removed(
    pc_store: Store, pinecone: PineconeServer
) -> None:
    before = set(pinecone.indexes)

    def fail_the_commit(conn) -> None:  # noqa: ANN001 - SQLAlchemy's event signature
        raise RuntimeError("the database went away at commit")

    event.listen(pc_store.engine, "commit", fail_the_commit)
    try:
        with pytest.raises(RuntimeError, match="went away"):
            pc_store.create_collection("commit-fails", "m", DIM, vector_backend="pinecone")
    finally:
        event.remove(pc_store.engine, "commit", fail_the_commit)
    assert set(pinecone.indexes) == before
    with pytest.raises(NotFound):
        pc_store.get_collection("commit-fails")


# -- the test server keeps Pinecone's semantics (so the tests above mean something) ------------


def test_the_test_server_answers_the_sdk_as_pinecone_does(pinecone: PineconeServer) -> None:
    from pinecone import Pinecone, ServerlessSpec
    from pinecone.errors.exceptions import (
        ApiError,
        ConflictError,
        NotFoundError,
        UnauthorizedError,
    )

    pc = Pinecone(api_key=pinecone.api_key, host=pinecone.url)
    name = f"proto-{uuid.uuid4().hex[:8]}"
    spec = ServerlessSpec(cloud="aws", region="us-east-1")
    try:
        pc.indexes.create(name=name, dimension=3, metric="cosine", spec=spec)
        with pytest.raises(ConflictError):
            pc.indexes.create(name=name, dimension=3, metric="cosine", spec=spec)
        host = pc.indexes.describe(name).host.replace("https://", "http://")
        index = pc.index(host=host)
        index.upsert(vectors=[("a", [1, 0, 0]), ("b", [1, 1, 0])], namespace="one")
        index.upsert(vectors=[("a", [0, 0, 1])], namespace="two")
        matches = index.query(vector=[1, 0, 0], top_k=5, namespace="one").matches
        assert [m.id for m in matches] == ["a", "b"]
        assert [m.score for m in matches] == pytest.approx([1.0, 2**-0.5])
        assert index.query(vector=[1, 0, 0], top_k=5, namespace="two").matches[0].score == 0
        with pytest.raises(ApiError, match="dimension"):
            index.upsert(vectors=[("c", [1, 0])], namespace="one")
        assert index.fetch(ids=["a", "x"], namespace="two").vectors["a"].values == [0, 0, 1]
        index.upsert(vectors=[(f"p{n}", [1, 0, n]) for n in range(5)], namespace="one")
        pages = [
            [v.id for v in page.vectors]
            for page in index.list(prefix="p", limit=2, namespace="one")
        ]
        assert pages == [["p0", "p1"], ["p2", "p3"], ["p4"]]
        index.delete(delete_all=True, namespace="one")
        stats = index.describe_index_stats()
        assert stats.total_vector_count == 1 and set(stats.namespaces) == {"two"}
        index.close()
        with pytest.raises(UnauthorizedError):
            Pinecone(api_key="wrong", host=pinecone.url).indexes.describe(name)
    finally:
        pc.indexes.delete(name, timeout=-1)
    with pytest.raises(NotFoundError):
        pc.indexes.describe(name)
    pc.close()


@pytest.mark.parametrize(
    ("field", "value"), [("dimension", 0), ("dimension", "8"), ("metric", "hamming")]
)
def test_the_test_server_refuses_a_bad_index_as_pinecone_does(
    pinecone: PineconeServer, field: str, value: object
) -> None:
    import httpx

    dense = {"type": "dense_vector", "dimension": 8, "metric": "cosine", field: value}
    body = {
        "name": "bad-index",
        "schema": {"fields": {"_values": dense}},
        "deployment": {"deployment_type": "managed", "cloud": "aws", "region": "us-east-1"},
    }
    answer = httpx.post(f"{pinecone.url}/indexes", json=body, headers={"Api-Key": pinecone.api_key})
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "INVALID_ARGUMENT"
    assert "bad-index" not in pinecone.indexes
