"""Clustering a collection's faces into persons, as a background run, honouring what
users decided.

- `incremental`: faces of nobody join existing persons or found new ones; faces that have
  a person stay where they are.
- `full`: every face not confirmed by a user is regrouped; confirmed faces stay with their
  person and pull the others to it. Groups keep the id of the person most of their faces
  had, so re-running changes as little as it must.

User decisions are facts clustering never overrides: confirmed faces (associated, enrolled,
split or merged by hand) never move; a face rejected from a person ("not this person")
never joins it; two faces of one image never share a person. New persons get generated ids
(`p-...`) and no name. A group smaller than `min_faces` founds no person.

The grouping itself is `linkage.cluster_faces` (numpy, no storage); `plan` turns a snapshot
into decisions and `run` reads, plans and writes. `start` runs it in the background, its
state kept in the store (`cluster_runs`) so that a restart shows an interrupted run. Large
collections plan elsewhere: a `Planner` (on Ray, a task of its own: `deployments/clustering`)
takes the snapshot, so the ingress never holds the planning's memory or CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from serve_app.errors import InvalidParameter
from serve_app.service import params, thresholds
from serve_app.service.context import CollectionContext, min_cosine
from serve_app.service.linkage import cluster_faces
from serve_app.store.people_records import ClusterPlan, ClusterRun, ClusterSnapshot

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD = thresholds.CLUSTERING
DEFAULT_MIN_FACES = 2  # LFW View 1: most identities have 2 photos; Immich uses 3
MAX_MIN_FACES = 100
MODES = ("incremental", "full")
HEARTBEAT_S = 10.0

# plan(snapshot, mode, cosine, min_faces), somewhere else (a Ray task).
Planner = Callable[[ClusterSnapshot, str, float, int], Awaitable[ClusterPlan]]


def plan(
    snapshot: ClusterSnapshot, mode: str, cosine: float, min_faces: int = DEFAULT_MIN_FACES
) -> ClusterPlan:
    """What a run decides for `snapshot` at `cosine` (pure: no storage)."""
    n = len(snapshot.face_ids)
    if n == 0:
        return ClusterPlan([], [], {})
    persons = np.array(snapshot.person_ids, dtype=object)
    has_person = np.array([p is not None for p in snapshot.person_ids], dtype=bool)
    fixed = snapshot.confirmed & has_person if mode == "full" else has_person
    person_index: dict[str, int] = {}
    anchors = np.full(n, -1, dtype=np.int64)
    for i in np.flatnonzero(fixed):
        anchors[i] = person_index.setdefault(persons[i], len(person_index))
    row_of = {face_id: i for i, face_id in enumerate(snapshot.face_ids)}
    rejected: dict[int, set[str]] = {}
    rejections = []
    for face_id, person_id in snapshot.rejections:
        if face_id not in row_of:
            continue
        rejected.setdefault(row_of[face_id], set()).add(person_id)
        if person_id in person_index:
            rejections.append((row_of[face_id], person_index[person_id]))
    _, images = np.unique(np.array(snapshot.image_ids), return_inverse=True)
    result = cluster_faces(snapshot.vectors, images, cosine, anchors=anchors, rejections=rejections)
    names = list(person_index)
    taken = set(names)  # persons that keep their confirmed faces: no other group takes them
    groups: list[tuple[str | None, list[str]]] = []
    released: list[str] = []
    clusters: dict[int, list[int]] = {}
    for i, label in enumerate(result.labels.tolist()):
        if not fixed[i]:
            clusters.setdefault(label, []).append(i)
    # Largest groups choose first which earlier person they continue.
    for label, members in sorted(clusters.items(), key=lambda item: -len(item[1])):
        anchor = int(result.anchors[label])
        ids = [snapshot.face_ids[i] for i in members]
        if anchor >= 0:
            groups.append((names[anchor], ids))
        elif len(members) >= min_faces:
            barred = set().union(*(rejected.get(i, set()) for i in members))
            earlier = Counter(p for p in persons[members] if p is not None)
            reuse = next(
                (p for p, _ in earlier.most_common() if p not in taken and p not in barred), None
            )
            if reuse is not None:
                taken.add(reuse)
            groups.append((reuse, ids))
        elif mode == "full":
            released += [snapshot.face_ids[i] for i in members if persons[i] is not None]
    expected = {
        face_id: snapshot.person_ids[row_of[face_id]] for _, ids in groups for face_id in ids
    } | {face_id: snapshot.person_ids[row_of[face_id]] for face_id in released}
    return ClusterPlan(groups, released, expected)


class ClusterService:
    """Clustering runs over the collections of one `CollectionContext`."""

    def __init__(
        self,
        context: CollectionContext,
        planner: Planner | None = None,
        planner_min_faces: int = 0,
    ) -> None:
        """`planner`: where collections of `planner_min_faces` faces or more are planned
        (None: always here, in a thread)."""
        self.context = context
        self._storage = context.storage
        self._planner = planner
        self._planner_min_faces = planner_min_faces
        self._tasks: set[asyncio.Task[None]] = set()

    def parameters(
        self, mode: str, threshold: float | None, min_faces: int | None
    ) -> dict[str, Any]:
        """A run's checked parameters, defaults filled in."""
        if mode not in MODES:
            raise InvalidParameter(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        return {
            "threshold": params.threshold(threshold, DEFAULT_THRESHOLD),
            "min_faces": params.count(
                "min_faces", DEFAULT_MIN_FACES if min_faces is None else min_faces, MAX_MIN_FACES
            ),
        }

    async def run(
        self, collection: str, mode: str, threshold: float, min_faces: int
    ) -> dict[str, Any]:
        """Read, plan and write one run; returns its result (counts, persons made/removed).
        Idempotent: running it again on an unchanged collection changes nothing."""
        _, pipeline = await self.context.collection(collection)
        snapshot = await self._storage.cluster_snapshot(collection)
        cosine = min_cosine(pipeline, threshold)
        elsewhere = self._planner is not None and len(snapshot.face_ids) >= self._planner_min_faces
        if elsewhere:
            decided = await self._planner(snapshot, mode, cosine, min_faces)
        else:
            decided = await asyncio.to_thread(plan, snapshot, mode, cosine, min_faces)
        outcome = await self._storage.apply_clustering(collection, decided)
        return {
            "planned_on": "ray" if elsewhere else "ingress",
            "faces": len(snapshot.face_ids),
            "assigned": outcome.assigned,
            "released": outcome.released,
            "skipped": outcome.skipped,
            "persons_created": len(outcome.created),
            "persons_removed": len(outcome.removed),
            "groups": len(decided.groups),
        }

    async def start(
        self,
        collection: str,
        mode: str = "incremental",
        threshold: float | None = None,
        min_faces: int | None = None,
    ) -> ClusterRun:
        """Start a run in the background; AlreadyExists while one is running."""
        parameters = self.parameters(mode, threshold, min_faces)
        await self.context.collection(collection)  # NotFound / ModelNotAvailable now, not later
        started = await self._storage.start_cluster_run(collection, mode, parameters)
        task = asyncio.get_running_loop().create_task(
            self._background(collection, started.run_id, mode, parameters)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return started

    async def wait(self) -> None:
        """Wait for the runs this service started (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def get_run(self, collection: str, run_id: str) -> ClusterRun:
        return await self._storage.get_cluster_run(collection, run_id)

    async def list_runs(self, collection: str, limit: int = 20) -> list[ClusterRun]:
        return await self._storage.list_cluster_runs(collection, limit)

    async def _background(
        self, collection: str, run_id: str, mode: str, parameters: dict[str, Any]
    ) -> None:
        beating = asyncio.get_running_loop().create_task(self._heartbeat(run_id))
        try:
            result = await self.run(
                collection, mode, parameters["threshold"], parameters["min_faces"]
            )
        except Exception as exc:  # recorded on the run; the log has the trace
            log.exception("clustering run %s of %s failed", run_id, collection)
            with contextlib.suppress(Exception):
                await self._storage.finish_cluster_run(run_id, "failed", error=str(exc))
        else:
            await self._storage.finish_cluster_run(run_id, "succeeded", result=result)
        finally:
            beating.cancel()

    async def _heartbeat(self, run_id: str) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            with contextlib.suppress(Exception):
                await self._storage.touch_cluster_run(run_id)
