"""The real operator (`operator/handlers.py`) run as an asyncio task against kmock (the kopf
author's Kubernetes API emulator) and an embedded PostgreSQL, in looptime's fake time."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import kmock
import kopf
import pytest

from serve_app.store import EmbeddedPostgres, Store

ROOT = Path(__file__).resolve().parents[2]
HANDLERS = ROOT / "operator" / "handlers.py"
RESOURCE = "faceserve.io/v1alpha1/facecollections"
NAMESPACE = "ns1"
DRIFT_INTERVAL_S = 60


@pytest.fixture(scope="session")
def store(postgres: EmbeddedPostgres) -> Iterator[Store]:
    """The test's own view of the database (the operator opens its own, from the env)."""
    opened = Store.open(postgres.url)
    yield opened
    opened.close()


def load_operator() -> kopf.OperatorRegistry:
    """Import operator/handlers.py afresh into its own registry (none leak between tests)."""
    registry = kopf.OperatorRegistry()
    previous = kopf.get_default_registry()
    kopf.set_default_registry(registry)
    try:
        spec = importlib.util.spec_from_file_location(f"handlers_{uuid.uuid4().hex}", HANDLERS)
        assert spec is not None and spec.loader is not None
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
    finally:
        kopf.set_default_registry(previous)
    return registry


def declare_cluster(k8s: kmock.KubernetesEmulator) -> None:
    """What the API server serves: our CRD's resource, plus what kopf itself looks for."""
    k8s.resources[RESOURCE] = {
        "kind": "FaceCollection",
        "singular": "facecollection",
        "namespaced": True,
        "verbs": {"get", "list", "watch", "patch"},
        "subresources": {"status"},
    }
    k8s.resources["apiextensions.k8s.io/v1/customresourcedefinitions"] = {
        "kind": "CustomResourceDefinition",
        "singular": "customresourcedefinition",
        "namespaced": False,
        "verbs": {"get", "list", "watch"},
    }
    k8s.resources["v1/namespaces"] = {
        "kind": "Namespace",
        "singular": "namespace",
        "namespaced": False,
        "verbs": {"get", "list", "watch"},
    }
    k8s.resources["v1/events"] = {
        "kind": "Event",
        "singular": "event",
        "namespaced": True,
        "verbs": {"create", "get", "list"},
    }


class Cluster:
    """The emulated cluster as a test sees it: FaceCollections in, their state out."""

    def __init__(self, k8s: kmock.KubernetesEmulator) -> None:
        self.k8s = k8s

    def url(self, name: str = "") -> str:
        base = f"/apis/faceserve.io/v1alpha1/namespaces/{NAMESPACE}/facecollections"
        return f"{base}/{name}" if name else base

    async def apply(self, name: str, spec: dict[str, Any]) -> None:
        """A FaceCollection as `kubectl apply` creates it (generation 1), through the API so
        that the operator's watch sees it."""
        body = {
            "apiVersion": "faceserve.io/v1alpha1",
            "kind": "FaceCollection",
            "metadata": {
                "name": name,
                "namespace": NAMESPACE,
                "uid": str(uuid.uuid4()),
                "resourceVersion": "1",
                "generation": 1,
            },
            "spec": spec,
        }
        response = await self.k8s.post(self.url(), json=body)
        assert response.status in (200, 201), await response.text()

    async def change_spec(self, name: str, spec: dict[str, Any]) -> None:
        """A spec edit: the API server bumps the generation with it."""
        generation = self.get(name)["metadata"]["generation"] + 1
        response = await self.k8s.patch(
            self.url(name),
            json={"metadata": {"generation": generation}, "spec": spec},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert response.status == 200, await response.text()

    async def delete(self, name: str) -> None:
        response = await self.k8s.delete(self.url(name))
        assert response.status == 200, await response.text()

    def obj(self, name: str) -> Any:
        return self.k8s.objects[RESOURCE, NAMESPACE, name]

    def get(self, name: str) -> dict[str, Any]:
        return _plain(self.obj(name))

    def ready(self, name: str) -> dict[str, Any] | None:
        conditions = self.get(name).get("status", {}).get("conditions", [])
        return next((c for c in conditions if c["type"] == "Ready"), None)

    def gone(self, name: str) -> bool:
        """Deleted and its finalizers released, so the API server really removed it."""
        return bool(self.obj(name).deleted)


def _plain(value: Any) -> Any:
    if hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


async def eventually(check: Callable[[], Any], timeout: float = 30.0, step: float = 0.5) -> Any:
    """Poll `check` in loop time (looptime makes the waiting free) until it is truthy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = check()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"not true within {timeout} s of loop time: {check}")
        await asyncio.sleep(step)


@pytest.fixture(autouse=True)
def operator_env(monkeypatch: pytest.MonkeyPatch, postgres: EmbeddedPostgres) -> None:
    monkeypatch.setenv("FACESERVE_DATABASE_URL", postgres.url)
    monkeypatch.setenv("FACESERVE_OPERATOR_DRIFT_INTERVAL_S", str(DRIFT_INTERVAL_S))


@contextlib.asynccontextmanager
async def running_operator(k8s: kmock.KubernetesEmulator) -> AsyncIterator[kopf.Memo]:
    """Runs the real operator inside `async with` and yields its memo (store, reconciler).

    Started in the test's own task on purpose: on stopping, kopf cancels every task created
    after it started, which would include a fixture's teardown task."""
    declare_cluster(k8s)
    registry = load_operator()

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=str(k8s.url), insecure=True)

    settings = kopf.OperatorSettings()
    settings.scanning.disabled = True  # the emulator serves no CRD objects to scan
    memo = kopf.Memo()
    stop = asyncio.Event()
    task = asyncio.create_task(
        kopf.operator(
            registry=registry,
            settings=settings,
            namespaces=[NAMESPACE],
            standalone=True,
            stop_flag=stop,
            memo=memo,
        )
    )
    try:
        await eventually(lambda: "reconciler" in memo or task.done())
        assert not task.done(), task.exception()
        yield memo
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=60)
