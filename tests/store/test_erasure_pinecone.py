"""Erasure with the Pinecone backend: the person's vectors leave Pinecone (those sent and
those still pending), and no table keeps a row of them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import numpy as np
import pytest
from sqlalchemy import text

from serve_app.store import EmbeddedPostgres, NewImage, Store
from serve_app.store.vectors.pinecone import PineconeIndex
from tests.pinecone_server import PineconeServer
from tests.store.conftest import DIM, new_face, unit_vectors

PREFIX = "ferase"


@pytest.fixture(scope="module")
def pinecone() -> Iterator[PineconeServer]:
    with PineconeServer() as server:
        yield server


@pytest.fixture(scope="module")
def pc_store(postgres: EmbeddedPostgres, pinecone: PineconeServer) -> Iterator[Store]:
    index = PineconeIndex(pinecone.api_key, pinecone.url, PREFIX)
    store = Store.open(postgres.fresh_database("erasure_pinecone"), vector_indexes=[index])
    yield store
    store.close()


def test_erasure_removes_the_persons_vectors_from_pinecone_sent_and_pending(
    pc_store: Store, pinecone: PineconeServer
) -> None:
    rng = np.random.default_rng(7)
    collection = pc_store.create_collection(
        f"erase-{uuid.uuid4().hex[:8]}", "test-model", DIM, vector_backend="pinecone"
    )
    name = collection.name
    image = NewImage("group", 640, 480, b"photo-bytes")
    faces = pc_store.add_faces(name, image, [new_face(v) for v in unit_vectors(rng, 4)])
    ids = [f.face_id for f in faces]
    index_name = f"{PREFIX}-{uuid.UUID(collection.id).hex}"
    assert set(pinecone.vectors(index_name)) == set(ids)
    pc_store.create_person(name, "gone")
    pc_store.associate_faces(name, "gone", ids[:2], -1.0, 100)
    # One more face of theirs whose vector has not reached Pinecone yet (pending).
    with pinecone.refuse_data_plane():
        pending = pc_store.add_faces(
            name, NewImage("late", 10, 10, None), [new_face(unit_vectors(rng, 1)[0])]
        )
    pc_store.associate_faces(name, "gone", [pending[0].face_id], -1.0, 100)
    erased_ids = [*ids[:2], pending[0].face_id]

    receipt = pc_store.erase_person(name, "gone")
    assert receipt["faces"] == receipt["vectors"] == 3 and receipt["persons"] == 1
    # Pinecone refused a moment ago, so the store waits out a cool-down before pushing again:
    # the deletes are queued in PostgreSQL, and the periodic pass (here: now) sends them.
    pc_store.repair_all()
    assert set(pinecone.vectors(index_name)) == set(ids[2:])
    with pc_store.engine.connect() as conn:
        tables = conn.execute(
            text(
                "SELECT table_schema, table_name FROM information_schema.tables "
                "WHERE table_schema = :s AND table_type = 'BASE TABLE'"
            ),
            {"s": collection.schema_name},
        ).all()
        for schema, table in tables:
            rows = conn.execute(text(f'SELECT t::text FROM "{schema}"."{table}" t')).scalars()
            leftover = [r for r in rows if "gone" in r or any(i in r for i in erased_ids)]
            assert leftover == [], f"{schema}.{table}: {leftover}"
    assert pc_store.erase_person(name, "gone") == dict.fromkeys(receipt, 0)
