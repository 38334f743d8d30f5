"""An embedded PostgreSQL owned by a named, detached Ray actor.

Used when no FACESERVE_DATABASE_URL is configured, so `serve run serve_config.yaml` and
`faceserve serve` work with nothing installed; the actor outlives the app build, restarts
the server if it dies (same port: the Search replicas' URLs stay valid), and
`stop_embedded_database` stops the server cleanly.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import ray

from serve_app.deployments.model_store import NAMESPACE

DATABASE_ACTOR = "faceserve-postgres"


@ray.remote(num_cpus=0)
class EmbeddedDatabase:
    def __init__(self, data_dir: str) -> None:
        from serve_app.store.embedded import EmbeddedPostgres
        from serve_app.store.watchdog import ServerSupervisor

        self._server = EmbeddedPostgres(Path(data_dir))
        self._url = self._server.start()
        # A detached actor dies without cleanup when its cluster stops (`serve run`, Ctrl-C):
        # a watchdog then stops the server so it does not hold the data directory.
        self._server.stop_when_process_exits(os.getpid())
        # A server that crashes (or is killed) comes back by itself.
        self._supervisor = ServerSupervisor(self._server)
        self._supervisor.start()

    def url(self) -> str:
        return self._url

    def status(self) -> dict[str, Any]:
        """The server's pid (None while down), port, supervised restarts and Ray node."""
        return {
            "pid": self._server.server_pid(),
            "port": self._server.port,
            "restarts": self._supervisor.restarts,
            "node_id": ray.get_runtime_context().get_node_id(),
        }

    def stop(self) -> None:
        self._supervisor.stop()
        self._server.stop()


def embedded_database_url(data_dir: Path) -> str:
    actor = EmbeddedDatabase.options(
        name=DATABASE_ACTOR, namespace=NAMESPACE, lifetime="detached", get_if_exists=True
    ).remote(str(data_dir))
    return ray.get(actor.url.remote())


def embedded_database_status() -> dict[str, Any] | None:
    """`EmbeddedDatabase.status()` of this cluster's embedded database; None if there is none."""
    try:
        actor = ray.get_actor(DATABASE_ACTOR, namespace=NAMESPACE)
    except ValueError:
        return None
    return ray.get(actor.status.remote(), timeout=30)


def stop_embedded_database() -> None:
    try:
        actor = ray.get_actor(DATABASE_ACTOR, namespace=NAMESPACE)
    except ValueError:
        return
    try:
        ray.get(actor.stop.remote(), timeout=30)
    finally:
        ray.kill(actor)
