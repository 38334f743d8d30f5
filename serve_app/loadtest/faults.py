"""Faults under load: kill an Embedder replica, or SIGKILL the embedded PostgreSQL, mid-run;
then watch the service until it is whole again (by itself: nothing here repairs anything).

Needs the Ray cluster: the runner's own (it started the service) or `--ray-address`.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import httpx

from serve_app.loadtest.results import FaultOutcome
from serve_app.loadtest.traffic import RunManifest, multipart

APP_NAME = "faceserve"
REPLICA_PREFIX = "SERVE_REPLICA::"
PROBE_INTERVAL_S = 0.5


class FaultUnavailable(RuntimeError):
    """This run cannot inject the fault (no Ray cluster, no embedded PostgreSQL, ...)."""


def connect_cluster(ray_address: str | None) -> None:
    """Make sure this process is a Ray client of the service's cluster."""
    import ray

    if ray.is_initialized():
        return
    if not ray_address:
        raise FaultUnavailable(
            "fault scenarios need the Ray cluster: let the runner start the service (no "
            "--host), or pass --ray-address"
        )
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(
        address=ray_address,
        namespace="faceserve-loadtest",
        logging_level="WARNING",
        log_to_driver=False,
    )


def check_available(kind: str) -> None:
    """Raise FaultUnavailable if `kind` cannot be injected into this cluster."""
    if kind == "kill-embedder-replica" and not embedder_replicas():
        raise FaultUnavailable(f"no Embedder replica of the {APP_NAME!r} app in this cluster")
    if kind == "restart-postgres":
        from serve_app.deployments.database import embedded_database_status

        if embedded_database_status() is None:
            raise FaultUnavailable(
                "restart-postgres needs the embedded PostgreSQL (FACESERVE_DATABASE_URL unset); "
                "this service uses an external database"
            )


def embedder_replicas() -> list[tuple[str, str]]:
    """(namespace, actor name) of every live Embedder replica."""
    import ray.util

    return sorted(
        (entry["namespace"], entry["name"])
        for entry in ray.util.list_named_actors(all_namespaces=True)
        if entry["name"].startswith(REPLICA_PREFIX) and f"{APP_NAME}#Embedder#" in entry["name"]
    )


def inject_and_watch(
    kind: str, base_url: str, manifest: RunManifest, timeout_s: float
) -> FaultOutcome:
    """Inject `kind` now, then poll until the service is whole again (or `timeout_s`)."""
    outcome = FaultOutcome(kind)
    try:
        recovered: Callable[[], bool]
        if kind == "kill-embedder-replica":
            recovered = _kill_embedder_replica(outcome)
        else:
            recovered = _kill_postgres(outcome)
    except Exception as exc:  # noqa: BLE001 - reported as a failed check, not a crash
        outcome.error = f"could not inject {kind}: {exc}"
        return outcome
    deadline = time.time() + timeout_s
    with httpx.Client(base_url=base_url, timeout=30) as client:
        while time.time() < deadline:
            try:
                if recovered() and _probe(client, manifest):
                    outcome.recovered_at = time.time()
                    break
            except Exception:  # noqa: BLE001, S110 - not recovered yet; poll again
                pass
            time.sleep(PROBE_INTERVAL_S)
    if outcome.recovered_at is None:
        outcome.detail += f"; not recovered after {timeout_s:.0f} s"
    return outcome


def _kill_embedder_replica(outcome: FaultOutcome) -> Callable[[], bool]:
    import ray

    before = embedder_replicas()
    if not before:
        raise FaultUnavailable("no Embedder replica to kill")
    namespace, name = before[0]
    ray.kill(ray.get_actor(name, namespace=namespace), no_restart=True)
    outcome.injected_at = time.time()
    outcome.target = name.removeprefix(REPLICA_PREFIX)
    outcome.detail = f"killed {outcome.target} ({len(before)} Embedder replica(s) running)"

    def recovered() -> bool:
        # Serve must have started a replacement and consider the deployment healthy again.
        names = {n for _, n in embedder_replicas()}
        if name in names or not names - {n for _, n in before}:
            return False
        if _deployment_status("Embedder") != "HEALTHY":
            return False
        if "replaced" not in outcome.detail:
            new = sorted(names - {n for _, n in before})
            outcome.detail += f"; Serve replaced it with {new[0].removeprefix(REPLICA_PREFIX)}"
        return True

    return recovered


def _kill_postgres(outcome: FaultOutcome) -> Callable[[], bool]:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from serve_app.deployments.database import embedded_database_status

    status = embedded_database_status()
    if status is None or status["pid"] is None:
        raise FaultUnavailable("the embedded PostgreSQL is not running")
    pid, restarts = status["pid"], status["restarts"]
    # SIGKILL from the database's own node: the fault a crash or the OOM killer would be.
    kill = ray.remote(num_cpus=0)(_sigkill).options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(status["node_id"], soft=False)
    )
    ray.get(kill.remote(pid), timeout=30)
    outcome.injected_at = time.time()
    outcome.target = f"postmaster pid {pid}"
    outcome.detail = f"SIGKILL to the PostgreSQL postmaster (pid {pid})"

    def recovered() -> bool:
        now = embedded_database_status()
        if now is None or now["pid"] is None or now["restarts"] <= restarts:
            return False
        if "restarted" not in outcome.detail:
            outcome.detail += f"; the supervisor restarted it (pid {now['pid']})"
        return True

    return recovered


def _sigkill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


def _deployment_status(name: str) -> str | None:
    from ray import serve

    app = serve.status().applications.get(APP_NAME)
    if app is None or name not in app.deployments:
        return None
    return str(app.deployments[name].status.value)


def _probe(client: httpx.Client, manifest: RunManifest) -> bool:
    """Whole again: ready, and a search by image (every deployment, the database) works."""
    if client.get("/readyz").status_code != 200:
        return False
    query = manifest.by_name(manifest.search_queries[0])
    body, headers = multipart({}, {"image": (query.file, manifest.blob(query))})
    response = client.post(
        f"/v1/collections/{manifest.collection}/search", content=body, headers=headers
    )
    return response.status_code == 200 and bool(response.json()["matches"])
