"""One embedded PostgreSQL for the store tests, a fresh collection per test."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import numpy as np
import pytest

from serve_app.errors import NotFound
from serve_app.store import CollectionRecord, EmbeddedPostgres, NewFace, Store

DIM = 8


@pytest.fixture(scope="session")
def store(postgres: EmbeddedPostgres) -> Iterator[Store]:
    opened = Store.open(postgres.url)
    yield opened
    opened.close()


@pytest.fixture
def collection(store: Store) -> Iterator[CollectionRecord]:
    record = store.create_collection(f"test-{uuid.uuid4().hex[:12]}", "test-model", DIM)
    yield record
    with contextlib.suppress(NotFound):  # the test may have deleted it
        store.delete_collection(record.name)


def unit_vectors(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def new_face(embedding: np.ndarray, **metadata: object) -> NewFace:
    return NewFace(
        bounding_box={"left": 0.1, "top": 0.2, "width": 0.3, "height": 0.4},
        landmarks=[[1.0, 2.0], [3.0, 4.0]],
        confidence=99.0,
        quality={"sharpness": 0.8},
        embedding=embedding,
        metadata=dict(metadata),
    )


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
