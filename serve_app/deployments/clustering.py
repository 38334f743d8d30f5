"""Clustering's planning on Ray: a task of its own per run, for large collections.

Planning holds every vector and the linkage's per-face structures (about 17 GB at 1M faces,
BENCHMARKS.md) and keeps a core busy for minutes. In a task the ingress keeps answering, the
work runs niced behind live requests, and `max_calls=1` ends the worker process afterwards,
so that memory goes back to the machine instead of staying in a reused worker.
"""

from __future__ import annotations

import os

import ray

from serve_app.service.clustering import plan
from serve_app.store.people_records import ClusterPlan, ClusterSnapshot


@ray.remote(max_calls=1, max_retries=0, num_cpus=0)
def _plan_task(
    snapshot: ClusterSnapshot, mode: str, cosine: float, min_faces: int, nice: int
) -> tuple[ClusterPlan, int]:
    if nice:
        os.nice(nice)  # live requests first
    return plan(snapshot, mode, cosine, min_faces), os.getpid()


class RayPlanner:
    """`ClusterService`'s planner: each call plans in a fresh Ray task."""

    def __init__(self, nice: int = 10) -> None:
        self._nice = nice
        self.last_pid: int | None = None  # the task's process (tests check it ran elsewhere)

    async def __call__(
        self, snapshot: ClusterSnapshot, mode: str, cosine: float, min_faces: int
    ) -> ClusterPlan:
        decided, self.last_pid = await _plan_task.remote(
            snapshot, mode, cosine, min_faces, self._nice
        )
        return decided
