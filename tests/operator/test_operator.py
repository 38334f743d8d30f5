"""The FaceCollection operator, for real: kopf + kmock + embedded PostgreSQL + looptime."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from serve_app.errors import NotFound
from serve_app.store import Store
from tests.operator.conftest import DRIFT_INTERVAL_S, Cluster, eventually, running_operator

pytestmark = [pytest.mark.asyncio, pytest.mark.looptime, pytest.mark.timeout(120)]


def schema_exists(store: Store, schema: str) -> bool:
    with store.engine.connect() as conn:
        found = conn.execute(
            text("SELECT 1 FROM information_schema.schemata WHERE schema_name = :s"), {"s": schema}
        )
        return found.first() is not None


def collection_or_none(store: Store, name: str) -> Any:
    try:
        return store.get_collection(name)
    except NotFound:
        return None


# kmock replays the object as first created when a watch restarts, so the create handler may
# run again on a body without our status: its "nothing to do" (Reconciled) then follows Created.
CREATED = "Created|Reconciled"


async def ready(
    cluster: Cluster, name: str, reason: str | None = None, timeout: float = 30.0
) -> dict[str, Any]:
    """The Ready condition once it exists (and has `reason`: one, or several joined by |)."""
    reasons = (reason or "").split("|")

    def check() -> dict[str, Any] | None:
        condition = cluster.ready(name)
        if condition is None or (reason is not None and condition["reason"] not in reasons):
            return None
        return condition

    return await eventually(check, timeout=timeout)


async def test_create_makes_the_schema_and_reports_ready(kmock, store: Store) -> None:
    async with running_operator(kmock):
        cluster = Cluster(kmock)
        await cluster.apply("album-a", {"modelPack": "dlib-r29", "deletionPolicy": "Delete"})

        condition = await ready(cluster, "album-a", reason=CREATED)
        assert condition["status"] == "True", condition
        assert condition["observedGeneration"] == 1

        collection = store.get_collection("album-a")
        assert collection.model_version == "dlib-r29:1"
        assert collection.embedding_dim == 128
        assert collection.vector_backend == "pgvector"
        assert schema_exists(store, collection.schema_name)
        # The service lists it like any other collection.
        assert "album-a" in [c.name for c in store.list_collections()]

        obj = cluster.get("album-a")
        status = obj["status"]
        assert status["observedGeneration"] == 1
        assert status["collectionId"] == collection.id
        assert status["schema"] == collection.schema_name
        assert status["faces"] == 0
        assert status["applied"] == {"modelPack": "dlib-r29", "vectorBackend": "pgvector"}
        assert "faceserve.io/storage" in obj["metadata"]["finalizers"]


async def test_delete_policy_drops_the_schema_and_releases_the_finalizer(
    kmock, store: Store
) -> None:
    async with running_operator(kmock):
        cluster = Cluster(kmock)
        await cluster.apply("album-del", {"deletionPolicy": "Delete"})
        await ready(cluster, "album-del")
        schema = store.get_collection("album-del").schema_name

        await cluster.delete("album-del")

        await eventually(lambda: cluster.gone("album-del"))
        assert collection_or_none(store, "album-del") is None
        assert not schema_exists(store, schema)


async def test_retain_policy_keeps_the_collection(kmock, store: Store) -> None:
    async with running_operator(kmock):
        cluster = Cluster(kmock)
        await cluster.apply("album-keep", {})  # deletionPolicy defaults to Retain
        await ready(cluster, "album-keep")
        schema = store.get_collection("album-keep").schema_name

        await cluster.delete("album-keep")

        await eventually(lambda: cluster.gone("album-keep"))
        assert collection_or_none(store, "album-keep") is not None
        assert schema_exists(store, schema)
        store.delete_collection("album-keep")


async def test_changing_an_immutable_field_is_refused_and_changes_nothing(
    kmock, store: Store
) -> None:
    async with running_operator(kmock):
        cluster = Cluster(kmock)
        await cluster.apply("album-pinned", {"modelPack": "dlib-r29", "deletionPolicy": "Delete"})
        await ready(cluster, "album-pinned")
        before = store.get_collection("album-pinned")

        await cluster.change_spec("album-pinned", {"modelPack": "buffalo_l"})

        condition = await ready(cluster, "album-pinned", reason="ImmutableFieldChanged")
        assert condition["status"] == "False"
        assert "spec.modelPack: dlib-r29 -> buffalo_l" in condition["message"]
        assert condition["observedGeneration"] == 2
        after = store.get_collection("album-pinned")
        assert (after.id, after.model_version, after.schema_name) == (
            before.id,
            before.model_version,
            before.schema_name,
        )
        assert cluster.get("album-pinned")["status"]["applied"]["modelPack"] == "dlib-r29"

        # A mutable field still applies, and reverting the pack makes it Ready again.
        await cluster.change_spec("album-pinned", {"modelPack": "dlib-r29"})
        condition = await ready(cluster, "album-pinned", reason="Reconciled")
        assert condition["status"] == "True"
        assert condition["observedGeneration"] == 3
        assert store.get_collection("album-pinned").id == before.id


async def test_the_timer_repairs_a_schema_dropped_behind_its_back(kmock, store: Store) -> None:
    async with running_operator(kmock):
        cluster = Cluster(kmock)
        await cluster.apply("album-drift", {"deletionPolicy": "Delete"})
        await ready(cluster, "album-drift")
        collection = store.get_collection("album-drift")
        with store.engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{collection.schema_name}" CASCADE'))
        assert store.storage_problems("album-drift")

        # The next drift check (interval DRIFT_INTERVAL_S of loop time) puts it back.
        condition = await ready(
            cluster, "album-drift", reason="Repaired", timeout=DRIFT_INTERVAL_S * 2
        )
        assert condition["status"] == "True"
        assert schema_exists(store, collection.schema_name)
        assert store.storage_problems("album-drift") == []
        assert store.count_faces("album-drift") == 0  # usable again


async def test_the_timer_recreates_a_collection_deleted_through_the_api(
    kmock, store: Store
) -> None:
    async with running_operator(kmock):
        cluster = Cluster(kmock)
        await cluster.apply("album-gone", {"deletionPolicy": "Delete"})
        await ready(cluster, "album-gone")
        old_id = store.get_collection("album-gone").id
        store.delete_collection("album-gone")

        await eventually(
            lambda: (c := collection_or_none(store, "album-gone")) is not None and c.id != old_id,
            timeout=DRIFT_INTERVAL_S * 2,
        )
        await ready(cluster, "album-gone", reason=CREATED)


async def test_an_invalid_spec_stops_with_a_condition(kmock, store: Store) -> None:
    async with running_operator(kmock):
        cluster = Cluster(kmock)
        await cluster.apply("album-bad", {"vectorBackend": "milvus"})

        condition = await ready(cluster, "album-bad", reason="InvalidSpec")
        assert condition["status"] == "False"
        assert "vectorBackend" in condition["message"] and "milvus" in condition["message"]
        assert collection_or_none(store, "album-bad") is None
        # Permanent: no retries pile up in loop time.
        await asyncio.sleep(DRIFT_INTERVAL_S / 2)
        assert collection_or_none(store, "album-bad") is None


async def test_a_collection_it_does_not_own_is_left_alone(kmock, store: Store) -> None:
    async with running_operator(kmock):
        store.create_collection("album-theirs", "dlib-r29:1", 128)
        cluster = Cluster(kmock)
        await cluster.apply("album-theirs", {"deletionPolicy": "Delete"})

        condition = await ready(cluster, "album-theirs", reason="NameConflict")
        assert condition["status"] == "False"
        assert "not managed by this FaceCollection" in condition["message"]

        await cluster.delete("album-theirs")
        await eventually(lambda: cluster.gone("album-theirs"))
        assert collection_or_none(store, "album-theirs") is not None  # Delete never reached it
        store.delete_collection("album-theirs")


class FlakyStore:
    """The operator's store, failing its first `failures` calls as a PostgreSQL outage does."""

    def __init__(self, store: Store, failures: int) -> None:
        self._store, self.failures = store, failures

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._store, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.failures > 0:
                self.failures -= 1
                raise OperationalError("SELECT 1", {}, Exception("connection refused"))
            return method(*args, **kwargs)

        return call


# kopf keeps retry delays in wall-clock time (an annotation on the resource), which looptime
# cannot compress: this one test runs in real time, with a short backoff.
@pytest.mark.looptime(False)
async def test_a_storage_outage_is_retried_with_backoff(
    kmock, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FACESERVE_OPERATOR_RETRY_BASE_S", "0.2")
    async with running_operator(kmock) as operator:
        flaky = FlakyStore(operator.reconciler.store, failures=2)
        operator.reconciler.store = flaky
        cluster = Cluster(kmock)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await cluster.apply("album-retry", {"deletionPolicy": "Delete"})

        condition = await ready(cluster, "album-retry", reason=CREATED)
        assert condition["status"] == "True"
        assert flaky.failures == 0
        # Two failures: retried after 0.2 s, then after 0.4 s more.
        assert loop.time() - started >= 0.6
        assert collection_or_none(store, "album-retry") is not None
        await cluster.delete("album-retry")
        await eventually(lambda: cluster.gone("album-retry"))
