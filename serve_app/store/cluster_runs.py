"""Clustering runs in the control schema: started, kept alive by a heartbeat, finished.

A run's row is written before it starts and its outcome when it ends, so a restart never
loses one: a run whose heartbeat stopped (its process died) reads as `interrupted`.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, func, select

from serve_app.errors import AlreadyExists, InvalidParameter, NotFound
from serve_app.store import validation as check
from serve_app.store.access import CollectionAccess
from serve_app.store.control import cluster_runs
from serve_app.store.people_records import ClusterRun
from serve_app.store.records import CollectionRecord

MODES = ("incremental", "full")
STATES = ("running", "succeeded", "failed", "interrupted")
# A running run's heartbeat comes every few seconds; this long without one, it died.
STALE_AFTER = timedelta(seconds=60)
MAX_RUNS_LISTED = 100


class ClusterRunStorage:
    """The clustering runs of every collection."""

    def __init__(self, access: CollectionAccess) -> None:
        self._access = access

    def start_cluster_run(
        self, collection_name: str, mode: str, parameters: dict[str, Any]
    ) -> ClusterRun:
        """A new `running` run; AlreadyExists while another run of the collection is alive."""
        if mode not in MODES:
            raise InvalidParameter(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        params = check.json_object("parameters", parameters)
        with self._access.engine.begin() as conn:
            collection = self._access.collection(conn, collection_name, lock="update")
            _interrupt_stale(conn, collection.id)
            alive = conn.execute(
                select(cluster_runs.c.id).where(
                    cluster_runs.c.collection_id == collection.id,
                    cluster_runs.c.state == "running",
                )
            ).first()
            if alive is not None:
                raise AlreadyExists(
                    f"clustering run {alive.id} is still running in collection {collection_name!r}"
                )
            row = conn.execute(
                cluster_runs.insert()
                .values(
                    id=str(uuid.uuid4()),
                    collection_id=collection.id,
                    mode=mode,
                    state="running",
                    parameters=params,
                    created_at=func.now(),
                    heartbeat_at=func.now(),
                )
                .returning(cluster_runs)
            ).one()
            return _run(row, collection.name)

    def touch_cluster_run(self, run_id: str) -> None:
        """The run is alive (its heartbeat)."""
        with self._access.engine.begin() as conn:
            conn.execute(
                cluster_runs.update()
                .where(cluster_runs.c.id == _run_id(run_id))
                .values(heartbeat_at=func.now())
            )

    def finish_cluster_run(
        self,
        run_id: str,
        state: str,
        result: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        """Record how a run ended (`succeeded` with its result, or `failed` with why)."""
        if state not in ("succeeded", "failed"):
            raise InvalidParameter(f"a run ends succeeded or failed, not {state!r}")
        with self._access.engine.begin() as conn:
            conn.execute(
                cluster_runs.update()
                .where(cluster_runs.c.id == _run_id(run_id), cluster_runs.c.state == "running")
                .values(
                    state=state,
                    result=None if result is None else check.json_object("result", result),
                    error=None if error is None else error[:2000],
                    finished_at=func.now(),
                    heartbeat_at=func.now(),
                )
            )

    def get_cluster_run(self, collection_name: str, run_id: str) -> ClusterRun:
        """One run of the collection; NotFound if it has none with this id."""
        rid = _run_id(run_id)
        with self._access.engine.begin() as conn:
            collection = self._access.collection(conn, collection_name)
            _interrupt_stale(conn, collection.id)
            row = conn.execute(
                select(cluster_runs).where(
                    cluster_runs.c.id == rid, cluster_runs.c.collection_id == collection.id
                )
            ).one_or_none()
            if row is None:
                raise NotFound(f"clustering run {rid} not found in collection {collection_name!r}")
            return _run(row, collection.name)

    def list_cluster_runs(self, collection_name: str, limit: int = 20) -> list[ClusterRun]:
        """The collection's latest runs, newest first."""
        limit = check.positive_int("limit", limit, maximum=MAX_RUNS_LISTED)
        with self._access.engine.begin() as conn:
            collection = self._access.collection(conn, collection_name)
            _interrupt_stale(conn, collection.id)
            rows = conn.execute(
                select(cluster_runs)
                .where(cluster_runs.c.collection_id == collection.id)
                .order_by(cluster_runs.c.created_at.desc())
                .limit(limit)
            ).all()
            return [_run(row, collection.name) for row in rows]


def latest_run(conn: Connection, collection: CollectionRecord) -> ClusterRun | None:
    """The collection's newest run (a dead one reads as interrupted), or None."""
    row = conn.execute(
        select(cluster_runs)
        .where(cluster_runs.c.collection_id == collection.id)
        .order_by(cluster_runs.c.created_at.desc())
        .limit(1)
    ).one_or_none()
    return None if row is None else _run(row, collection.name, now=_now(conn))


def _now(conn: Connection) -> datetime:
    return conn.execute(select(func.now())).scalar_one()


def _interrupt_stale(conn: Connection, collection_id: str) -> None:
    conn.execute(
        cluster_runs.update()
        .where(
            cluster_runs.c.collection_id == collection_id,
            cluster_runs.c.state == "running",
            cluster_runs.c.heartbeat_at < func.now() - STALE_AFTER,
        )
        .values(
            state="interrupted",
            error="the run stopped without finishing (its process ended); start it again",
            finished_at=func.now(),
        )
    )


def _run_id(value: object) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise InvalidParameter(f"invalid clustering run id {str(value)[:80]!r}") from None


def _run(row: Row[Any], collection_name: str, now: datetime | None = None) -> ClusterRun:
    state = row.state
    if now is not None and state == "running" and row.heartbeat_at < now - STALE_AFTER:
        state = "interrupted"
    return ClusterRun(
        run_id=str(row.id),
        collection=collection_name,
        mode=row.mode,
        state=state,
        parameters=dict(row.parameters),
        result=None if row.result is None else dict(row.result),
        error=row.error,
        created_at=row.created_at,
        finished_at=row.finished_at,
    )
