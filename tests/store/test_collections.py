"""Collections: create, read, list, delete, names, migrations."""

from __future__ import annotations

import threading
import uuid

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text

from serve_app.errors import AlreadyExists, InvalidParameter, NotFound
from serve_app.store import CollectionRecord, Store, migrate
from serve_app.store.versions import alembic_config, collection_head, collection_revision


def schema_exists(store: Store, schema_name: str) -> bool:
    with store.engine.connect() as conn:
        found = conn.execute(
            text("SELECT 1 FROM information_schema.schemata WHERE schema_name = :s"),
            {"s": schema_name},
        )
        return found.first() is not None


def test_migrate_is_idempotent_and_safe_to_run_concurrently(store: Store) -> None:
    migrate(store.engine)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            migrate(store.engine)
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with store.engine.connect() as conn:
        versions = conn.execute(text("SELECT version_num FROM faceserve.alembic_version")).all()
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head == "0006" and [v[0] for v in versions] == [head]


def test_create_get_list_delete(store: Store) -> None:
    name = f"people-{uuid.uuid4().hex[:8]}"
    created = store.create_collection(name, "dlib-r29", 128, metadata={"team": "a"})
    assert created.name == name
    assert created.schema_name == "c_" + uuid.UUID(created.id).hex
    assert (created.embedding_dim, created.vector_backend) == (128, "pgvector")
    assert created.face_count == 0
    assert schema_exists(store, created.schema_name)

    fetched = store.get_collection(name)
    assert fetched == created
    assert name in [c.name for c in store.list_collections()]
    with store.engine.connect() as conn:
        assert collection_revision(conn, created.schema_name) == collection_head()

    store.delete_collection(name)
    assert not schema_exists(store, created.schema_name)
    assert name not in [c.name for c in store.list_collections()]
    with pytest.raises(NotFound, match=name):
        store.get_collection(name)
    with pytest.raises(NotFound, match=name):
        store.delete_collection(name)


def test_duplicate_name_is_already_exists(store: Store, collection: CollectionRecord) -> None:
    with pytest.raises(AlreadyExists, match=collection.name):
        store.create_collection(collection.name, "test-model", 8)


def test_racing_creates_of_one_name_make_one_collection(store: Store) -> None:
    name = f"race-{uuid.uuid4().hex[:8]}"
    barrier = threading.Barrier(4)
    outcomes: list[str] = []

    def create() -> None:
        barrier.wait()
        try:
            store.create_collection(name, "test-model", 8)
            outcomes.append("created")
        except AlreadyExists:
            outcomes.append("exists")

    threads = [threading.Thread(target=create) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert sorted(outcomes) == ["created", "exists", "exists", "exists"]
        assert [c.name for c in store.list_collections()].count(name) == 1
    finally:
        store.delete_collection(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "a" * 256,
        "has space",
        "slash/name",
        "ünïcode",
        "trailing-newline\n",
        'x"; DROP SCHEMA faceserve CASCADE; --',
        "x'; DELETE FROM faceserve.collections; --",
        None,
        42,
    ],
)
def test_bad_names_are_invalid_and_inject_nothing(
    store: Store, collection: CollectionRecord, name: object
) -> None:
    with pytest.raises(InvalidParameter):
        store.create_collection(name, "test-model", 8)  # type: ignore[arg-type]
    with pytest.raises(InvalidParameter):
        store.get_collection(name)  # type: ignore[arg-type]
    with pytest.raises(InvalidParameter):
        store.delete_collection(name)  # type: ignore[arg-type]
    assert store.get_collection(collection.name) == collection
    assert schema_exists(store, collection.schema_name)


def test_longest_allowed_name_and_punctuation_work(store: Store) -> None:
    name = "A-b_c." + "z" * 249
    created = store.create_collection(name, "test-model", 8)
    try:
        assert store.get_collection(name).id == created.id
    finally:
        store.delete_collection(name)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"embedding_dim": 0}, "embedding_dim"),
        ({"embedding_dim": 2001}, "embedding_dim"),
        ({"embedding_dim": "128"}, "embedding_dim"),
        ({"model_version": ""}, "model_version"),
        ({"vector_backend": "faiss"}, "faiss"),
        ({"metadata": ["not", "an", "object"]}, "metadata"),
    ],
)
def test_bad_collection_parameters(store: Store, kwargs: dict, message: str) -> None:
    args = {"name": f"bad-{uuid.uuid4().hex[:8]}", "model_version": "m", "embedding_dim": 8}
    with pytest.raises(InvalidParameter, match=message):
        store.create_collection(**(args | kwargs))
    assert args["name"] not in [c.name for c in store.list_collections()]


def test_ping(store: Store) -> None:
    assert store.ping() is True


def test_a_collection_whose_schema_was_dropped_does_not_break_the_listing(store: Store) -> None:
    healthy = store.create_collection(f"ok-{uuid.uuid4().hex[:8]}", "test-model", 8)
    damaged = store.create_collection(f"dropped-{uuid.uuid4().hex[:8]}", "test-model", 8)
    try:
        with store.engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{damaged.schema_name}" CASCADE'))
        listed = {c.name: c for c in store.list_collections()}
        assert listed[healthy.name].face_count == 0
        assert listed[damaged.name].face_count == 0  # its faces are gone with the schema
        assert store.storage_problems(damaged.name)
        store.repair_storage(damaged.name)
        assert store.storage_problems(damaged.name) == []
    finally:
        store.delete_collection(healthy.name)
        store.delete_collection(damaged.name)
