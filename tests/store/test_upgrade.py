"""A database left by the previous release (its own DDL, its `schema_version` column) opens
with today's Store: its collections and faces are all there, searchable, and each upgraded
schema is exactly what a new collection gets from today's table definitions."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from sqlalchemy import Connection, Engine, text

from serve_app.store import EmbeddedPostgres, Store
from serve_app.store.database import create_engine_for
from serve_app.store.versions import collection_head, collection_revision
from tests.store.conftest import DIM, unit_vectors
from tests.store.legacy_schema import previous_release_collection, previous_release_database


@pytest.fixture
def old_engine(postgres: EmbeddedPostgres) -> Iterator[Engine]:
    """A database of its own on the shared server, as the previous release left it."""
    engine = create_engine_for(postgres.fresh_database("previous_release"))
    previous_release_database(engine)
    yield engine
    engine.dispose()


def test_collections_of_the_previous_release_open_with_their_faces(
    old_engine: Engine, rng: np.random.Generator
) -> None:
    vectors = unit_vectors(rng, 6)
    v1_schema, v1_faces = previous_release_collection(old_engine, "old-v1", 1, vectors[:3])
    v2_schema, v2_faces = previous_release_collection(old_engine, "old-v2", 2, vectors[3:])

    store = Store.open(old_engine.url.render_as_string(hide_password=False))
    try:
        listed = {c.name: c.face_count for c in store.list_collections()}
        assert listed == {"old-v1": 3, "old-v2": 3}
        for name, faces, vector in (
            ("old-v1", v1_faces, vectors[1]),
            ("old-v2", v2_faces, vectors[4]),
        ):
            hits = store.search(name, vector, 1, 0.99)
            assert [h[0].face_id for h in hits] == [faces[1]]
            assert [f.face_id for f in store.list_faces(name)[0]] == faces
            assert store.storage_problems(name) == []
        # Version 1 had no request tokens: the upgrade gave it the table, so retries replay.
        person = store.create_person("old-v1", "p", request_token="retry-me")
        assert store.create_person("old-v1", "p", request_token="retry-me") == person
        with old_engine.connect() as conn:
            assert collection_revision(conn, v1_schema) == collection_head()
            assert collection_revision(conn, v2_schema) == collection_head()
            columns = conn.execute(
                text(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_schema = 'faceserve' AND table_name = 'collections'"
                )
            ).scalars()
            assert "schema_version" not in set(columns)
    finally:
        store.close()
    again = Store.open(old_engine.url.render_as_string(hide_password=False))  # idempotent
    try:
        assert again.count_faces("old-v1") == 3
    finally:
        again.close()


def test_an_upgraded_schema_is_what_a_new_collection_gets(
    old_engine: Engine, rng: np.random.Generator
) -> None:
    old_schema, _ = previous_release_collection(old_engine, "old", 1, unit_vectors(rng, 1))
    store = Store.open(old_engine.url.render_as_string(hide_password=False))
    try:
        new_schema = store.create_collection("new", "test-model", DIM).schema_name
        with old_engine.connect() as conn:
            assert shape(conn, old_schema) == shape(conn, new_schema)
    finally:
        store.close()


def shape(conn: Connection, schema: str) -> dict[str, list[tuple[object, ...]]]:
    """Columns (type, nullability, default, storage), indexes and constraints of a schema,
    with its name taken out."""
    rows = {
        "columns": conn.execute(
            text(
                "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), "
                "a.attnotnull, pg_get_expr(d.adbin, d.adrelid), a.attstorage "
                "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
                "WHERE n.nspname = :s AND c.relkind = 'r' AND a.attnum > 0 "
                "AND NOT a.attisdropped ORDER BY 1, 2"
            ),
            {"s": schema},
        ).all(),
        "indexes": conn.execute(
            text("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = :s ORDER BY 1"),
            {"s": schema},
        ).all(),
        "constraints": conn.execute(
            text(
                "SELECT conrelid::regclass::text, contype, pg_get_constraintdef(oid) "
                "FROM pg_constraint WHERE connamespace = CAST(:s AS regnamespace) ORDER BY 1, 3"
            ),
            {"s": schema},
        ).all(),
    }
    return {
        kind: [tuple(str(v).replace(schema, "SCHEMA") for v in row) for row in found]
        for kind, found in rows.items()
    }
