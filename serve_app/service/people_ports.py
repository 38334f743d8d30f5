"""What the people services ask of storage (clustering, user decisions, enrolment, stats,
clustering runs, identification history): part of the `Storage` port (`ports.py`), declared
apart so that each half has one reason to change. Implemented by `Store` (`PeopleMethods`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from serve_app.store.people_records import (
    ClusterOutcome,
    ClusterPlan,
    ClusterRun,
    ClusterSnapshot,
    CollectionStats,
    EnrollOutcome,
    Identification,
    PeopleSettings,
)
from serve_app.store.records import FaceRecord, NewFace, NewImage, PersonRecord


class PeopleStoragePort(Protocol):
    async def cluster_snapshot(self, collection_name: str) -> ClusterSnapshot: ...

    async def apply_clustering(self, collection_name: str, plan: ClusterPlan) -> ClusterOutcome: ...

    async def split_person(
        self,
        collection_name: str,
        person_id: str,
        face_ids: Sequence[str],
        new_person_id: str,
        generated: bool = False,
    ) -> tuple[PersonRecord, PersonRecord]: ...

    async def reject_face(
        self, collection_name: str, person_id: str, face_id: str
    ) -> PersonRecord: ...

    async def update_person(
        self, collection_name: str, person_id: str, changes: dict[str, Any]
    ) -> PersonRecord: ...

    async def person_faces(
        self, collection_name: str, person_id: str, limit: int = 100, cursor: str | None = None
    ) -> tuple[list[FaceRecord], str | None]: ...

    async def enroll(
        self,
        collection_name: str,
        person_id: str,
        image: NewImage,
        face: NewFace,
        min_cosine: float,
        max_faces: int,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> EnrollOutcome: ...

    async def collection_stats(self, collection_name: str) -> CollectionStats: ...

    async def start_cluster_run(
        self, collection_name: str, mode: str, parameters: dict[str, Any]
    ) -> ClusterRun: ...

    async def touch_cluster_run(self, run_id: str) -> None: ...

    async def finish_cluster_run(
        self,
        run_id: str,
        state: str,
        result: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None: ...

    async def get_cluster_run(self, collection_name: str, run_id: str) -> ClusterRun: ...

    async def list_cluster_runs(
        self, collection_name: str, limit: int = 20
    ) -> list[ClusterRun]: ...

    async def people_settings(self, collection_name: str) -> PeopleSettings: ...

    async def set_people_settings(
        self,
        collection_name: str,
        match_history: bool | None = None,
        history_retention_days: int | None = None,
    ) -> PeopleSettings: ...

    async def record_identifications(
        self, collection_name: str, identifications: Sequence[Identification]
    ) -> int: ...

    async def identification_history(
        self,
        collection_name: str,
        person_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> tuple[list[Identification], str | None]: ...
