"""The operator with Pinecone collections: the real operator and `pinecone` SDK against
tests/pinecone_server.py (Pinecone's REST protocol), kmock, embedded PostgreSQL, looptime."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import numpy as np
import pytest

from serve_app.store import NewFace, NewImage, Store
from tests.operator.conftest import DRIFT_INTERVAL_S, Cluster, eventually, running_operator
from tests.operator.test_operator import CREATED, ready
from tests.pinecone_server import PineconeServer

pytestmark = [pytest.mark.asyncio, pytest.mark.looptime, pytest.mark.timeout(120)]
PREFIX = "fop"


@pytest.fixture
def pinecone(monkeypatch: pytest.MonkeyPatch) -> Iterator[PineconeServer]:
    """Pinecone, with the operator's credentials in its environment (as from the Secret)."""
    with PineconeServer(api_key=f"key-{uuid.uuid4().hex}") as server:
        monkeypatch.setenv("FACESERVE_PINECONE_API_KEY", server.api_key)
        monkeypatch.setenv("FACESERVE_PINECONE_HOST", server.url)
        monkeypatch.setenv("FACESERVE_PINECONE_INDEX_PREFIX", PREFIX)
        yield server


def face(vector: np.ndarray) -> NewFace:
    return NewFace({"left": 0, "top": 0, "width": 1, "height": 1}, [], 99.0, {}, vector)


async def test_a_pinecone_collection_gets_its_index_and_the_timer_restores_it(
    kmock, pinecone: PineconeServer
) -> None:
    async with running_operator(kmock) as operator:
        store: Store = operator.store
        cluster = Cluster(kmock)
        spec = {
            "vectorBackend": "pinecone",
            "pinecone": {"cloud": "gcp", "region": "europe-west4"},
            "deletionPolicy": "Delete",
        }
        await cluster.apply("album-pc", spec)

        condition = await ready(cluster, "album-pc", reason=CREATED)
        assert condition["status"] == "True"
        status = cluster.get("album-pc")["status"]
        index = status["pineconeIndex"]
        assert index.startswith(f"{PREFIX}-")
        state = pinecone.indexes[index]
        assert (state.dimension, state.metric) == (128, "cosine")
        assert (state.cloud, state.region) == ("gcp", "europe-west4")
        assert status["applied"] == {
            "modelPack": "dlib-r29",
            "vectorBackend": "pinecone",
            "pinecone": {"cloud": "gcp", "region": "europe-west4"},
        }

        # Faces indexed through the service's store land in Pinecone...
        rng = np.random.default_rng(7)
        vectors = rng.standard_normal((3, 128)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        records = store.add_faces("album-pc", NewImage("p.jpg", 10, 10), [face(v) for v in vectors])
        face_ids = {r.face_id for r in records}
        assert set(pinecone.vectors(index)) == face_ids

        # ...and when the index is deleted behind the operator's back, the drift check
        # recreates it and refills it from PostgreSQL.
        pinecone.drop_index(index)
        condition = await ready(
            cluster, "album-pc", reason="Repaired", timeout=DRIFT_INTERVAL_S * 2
        )
        assert condition["status"] == "True"
        assert set(pinecone.vectors(index)) == face_ids
        best, score = store.search("album-pc", vectors[1], 1, 0.0)[0]
        assert best.face_id == records[1].face_id and score == pytest.approx(1.0, abs=1e-5)
        assert cluster.get("album-pc")["status"]["faces"] == 3

        await cluster.delete("album-pc")
        await eventually(lambda: cluster.gone("album-pc"))
        assert index not in pinecone.indexes


async def test_pinecone_without_credentials_is_reported_not_retried_forever(kmock) -> None:
    # No FACESERVE_PINECONE_API_KEY in the operator's environment: the Secret is missing.
    async with running_operator(kmock):
        cluster = Cluster(kmock)
        await cluster.apply("album-nokey", {"vectorBackend": "pinecone"})
        condition = await ready(cluster, "album-nokey", reason="InvalidSpec")
        assert condition["status"] == "False"
        assert "pinecone" in condition["message"] and "not configured" in condition["message"]
