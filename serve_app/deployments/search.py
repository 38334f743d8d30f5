"""The Search deployment: owns the database connection pool (metadata + vector index).

With Pinecone configured it also runs the repair pass in a background thread: once at start
(never delaying readiness) and every `pinecone_repair_interval_s`, so vectors a crash or an
outage left pending reach Pinecone, and a missing index is recreated.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import TYPE_CHECKING, Any

from ray import serve

from serve_app.errors import InvalidParameter
from serve_app.service.ports import STORAGE_METHODS
from serve_app.store.database import outages_as_unavailable

if TYPE_CHECKING:
    from serve_app.config import Settings

log = logging.getLogger(__name__)


@serve.deployment(name="Search", ray_actor_options={"num_cpus": 0.25})
class Search:
    def __init__(self, database_url: str, settings: Settings | None = None) -> None:
        from serve_app.config import Settings
        from serve_app.store.store import Store
        from serve_app.store.vectors import vector_indexes_for

        settings = settings or Settings.from_env()
        self.store = Store.open(database_url, vector_indexes=vector_indexes_for(settings))
        self._stop = threading.Event()
        # Local indexes of large collections load in the background; until one is ready its
        # collection is searched in PostgreSQL, so readiness never waits for them.
        threading.Thread(target=self._warm, name="local-index-warm", daemon=True).start()
        if "pinecone" in self.store.vector_backends:
            interval = max(1.0, float(settings.pinecone_repair_interval_s))
            threading.Thread(
                target=self._repair_loop, args=(interval,), name="pinecone-repair", daemon=True
            ).start()

    def _warm(self) -> None:
        try:
            self.store.warm_vector_indexes()
        except Exception:  # noqa: BLE001 - searches warm them one by one instead
            log.exception("warming the local vector indexes failed")

    def _repair_loop(self, interval: float) -> None:
        while not self._stop.is_set():
            try:
                self.store.repair_all()  # logs what it repaired and what failed
            except Exception:  # noqa: BLE001 - the loop must outlive a bad pass (DB down)
                log.exception("Pinecone repair pass failed")
            self._stop.wait(interval)

    def __del__(self) -> None:
        self._stop.set()

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if method not in STORAGE_METHODS:
            raise InvalidParameter(f"unknown storage operation {method!r}")
        method_of_store = getattr(self.store, method)
        return await asyncio.to_thread(outages_as_unavailable, method_of_store, *args, **kwargs)
