"""Album jobs on Ray: the Jobs deployment (the coordinator and the `JobQueue` port) and the
index workers it starts as Ray actors.

Why actors and not Ray Data: a job must survive `kill -9` of anything, so its queue and
progress live in PostgreSQL, not in a Ray Data pipeline's memory; and each worker is best
as a long-lived process that loads a model pack once and reads, detects and embeds whole
groups of images without a network hop per photo (the Serve graph's Detector and Embedder
answer live requests). Workers run niced, so live searches get the CPU first, and scale
with the queue depth between job_min_workers and job_max_workers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import Any

import ray
from ray import serve

from serve_app.config import Settings
from serve_app.errors import InvalidParameter
from serve_app.service.ports import JOB_QUEUE_METHODS
from serve_app.store.database import outages_as_unavailable

log = logging.getLogger(__name__)


@ray.remote(max_restarts=0, max_concurrency=2)
class IndexWorker:
    """One album worker: a model pack, a store, and the loop over claimed images."""

    def __init__(
        self,
        name: str,
        database_url: str,
        settings: Settings,
        pack_name: str,
        model_key: str | None,
    ) -> None:
        from serve_app.deployments.inference import load_shared_pack
        from serve_app.service.album_indexing import AlbumIndexer, WorkerLoop
        from serve_app.service.job_transport import transport_for
        from serve_app.store.jobs import JobStore
        from serve_app.store.store import Store
        from serve_app.store.vectors import vector_indexes_for

        if settings.job_worker_nice:
            os.nice(settings.job_worker_nice)  # live requests first
        # One intra-op thread: the workers are the parallelism, one per core. Workers only
        # write: no replica-local search index here (the Search replicas read the change log).
        settings = Settings.from_env(
            **{**settings.model_dump(), "embed_threads": 1, "local_index": False}
        )
        jobs = JobStore(Store.open(database_url, vector_indexes=vector_indexes_for(settings)))
        indexer = AlbumIndexer(load_shared_pack(settings, pack_name, model_key), jobs, settings)
        self._loop = WorkerLoop(
            name, indexer, transport_for(jobs, settings), settings.job_batch_size
        )
        self._stop = threading.Event()

    def run(self) -> dict[str, int]:
        return self._loop.run(self._stop)

    def stop(self) -> None:
        self._stop.set()

    def pid(self) -> int:
        return os.getpid()


class RayWorkerPool:
    """Index workers as Ray actors, owned by the coordinator's replica (they die with it)."""

    def __init__(
        self, database_url: str, settings: Settings, pack_name: str, model_key: str | None
    ) -> None:
        self._args = (database_url, settings, pack_name, model_key)
        self._cpus = settings.job_worker_cpus
        self._workers: dict[str, tuple[Any, Any]] = {}

    def start(self, name: str) -> None:
        actor = IndexWorker.options(name=name, num_cpus=self._cpus).remote(name, *self._args)
        self._workers[name] = (actor, actor.run.remote())

    def stop(self, name: str) -> None:
        if name in self._workers:
            self._workers[name][0].stop.remote()

    def kill(self, name: str) -> None:
        if name in self._workers:
            ray.kill(self._workers[name][0], no_restart=True)

    def finished(self) -> dict[str, BaseException | None]:
        refs = {ref: name for name, (_, ref) in self._workers.items()}
        if not refs:
            return {}
        ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=0)
        ended: dict[str, BaseException | None] = {}
        for ref in ready:
            name = refs[ref]
            try:
                ray.get(ref)
                ended[name] = None
            except Exception as err:  # noqa: BLE001 - the actor died: its error is the news
                ended[name] = err
            del self._workers[name]
        return ended

    def names(self) -> list[str]:
        return list(self._workers)

    def pids(self) -> dict[str, int]:
        return {name: ray.get(actor.pid.remote()) for name, (actor, _) in self._workers.items()}


@serve.deployment(name="Jobs", num_replicas=1, ray_actor_options={"num_cpus": 0})
class Jobs:
    """The `JobQueue` port for the ingress, and the coordinator of the index workers."""

    def __init__(
        self, database_url: str, settings: Settings, pack_name: str, model_key: str | None
    ) -> None:
        from serve_app.service.job_coordinator import JobCoordinator
        from serve_app.service.job_transport import transport_for
        from serve_app.store.jobs import JobStore
        from serve_app.store.store import Store
        from serve_app.store.vectors import vector_indexes_for

        writer = Settings.from_env(**{**settings.model_dump(), "local_index": False})
        store = Store.open(database_url, vector_indexes=vector_indexes_for(writer))
        self.jobs = JobStore(store)
        transport = transport_for(self.jobs, settings)
        if hasattr(transport, "configure_dead_letters"):
            transport.configure_dead_letters()
        self.pool = RayWorkerPool(database_url, settings, pack_name, model_key)
        self.coordinator = JobCoordinator(self.jobs, settings, self.pool, transport)
        self.coordinator.recover()
        self._stop = threading.Event()
        threading.Thread(
            target=self.coordinator.run, args=(self._stop,), name="album-jobs", daemon=True
        ).start()

    def __del__(self) -> None:
        self._stop.set()

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if method not in JOB_QUEUE_METHODS:
            raise InvalidParameter(f"unknown job operation {method!r}")
        return await asyncio.to_thread(
            outages_as_unavailable, getattr(self.jobs, method), *args, **kwargs
        )

    async def metrics(self) -> dict[str, Any]:
        """What /metrics reports of the jobs: queue depth, workers, failures, durations."""

        def read() -> dict[str, Any]:
            return {
                "queue_depth": self.jobs.queue_depth(),
                "workers": len(self.pool.names()),
                "failures": self.jobs.failure_counts(),
                "durations": self.jobs.finished_durations(),
                "rates": self.jobs.running_rates(),
            }

        return await asyncio.to_thread(outages_as_unavailable, read)

    async def worker_pids(self) -> dict[str, int]:
        """Process ids of the index workers (for operators, and crash tests)."""
        return await asyncio.to_thread(self.pool.pids)
