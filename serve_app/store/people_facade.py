"""The people half of `Store`'s surface (clustering, user decisions, enrolment, stats,
clustering runs, identification history), handed to the parts that implement it. Kept
apart from `store.py` so that each file has one reason to change."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from serve_app.store.cluster_runs import ClusterRunStorage
from serve_app.store.history import HistoryStorage
from serve_app.store.people import PeopleStorage
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


class PeopleMethods:
    """Mixed into `Store`; `_people`, `_runs` and `_history` are set by its constructor."""

    _people: PeopleStorage
    _runs: ClusterRunStorage
    _history: HistoryStorage

    def cluster_snapshot(self, collection_name: str) -> ClusterSnapshot:
        return self._people.cluster_snapshot(collection_name)

    def apply_clustering(self, collection_name: str, plan: ClusterPlan) -> ClusterOutcome:
        return self._people.apply_clustering(collection_name, plan)

    def split_person(
        self,
        collection_name: str,
        person_id: str,
        face_ids: Sequence[str],
        new_person_id: str,
        generated: bool = False,
    ) -> tuple[PersonRecord, PersonRecord]:
        return self._people.split_person(
            collection_name, person_id, face_ids, new_person_id, generated
        )

    def reject_face(self, collection_name: str, person_id: str, face_id: str) -> PersonRecord:
        return self._people.reject_face(collection_name, person_id, face_id)

    def update_person(
        self, collection_name: str, person_id: str, changes: dict[str, Any]
    ) -> PersonRecord:
        return self._people.update_person(collection_name, person_id, changes)

    def person_faces(
        self, collection_name: str, person_id: str, limit: int = 100, cursor: str | None = None
    ) -> tuple[list[FaceRecord], str | None]:
        return self._people.person_faces(collection_name, person_id, limit, cursor)

    def enroll(
        self,
        collection_name: str,
        person_id: str,
        image: NewImage,
        face: NewFace,
        min_cosine: float,
        max_faces: int,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> EnrollOutcome:
        return self._people.enroll(
            collection_name, person_id, image, face, min_cosine, max_faces, name, metadata
        )

    def collection_stats(self, collection_name: str) -> CollectionStats:
        return self._people.collection_stats(collection_name)

    def start_cluster_run(
        self, collection_name: str, mode: str, parameters: dict[str, Any]
    ) -> ClusterRun:
        return self._runs.start_cluster_run(collection_name, mode, parameters)

    def touch_cluster_run(self, run_id: str) -> None:
        self._runs.touch_cluster_run(run_id)

    def finish_cluster_run(
        self,
        run_id: str,
        state: str,
        result: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        self._runs.finish_cluster_run(run_id, state, result, error)

    def get_cluster_run(self, collection_name: str, run_id: str) -> ClusterRun:
        return self._runs.get_cluster_run(collection_name, run_id)

    def list_cluster_runs(self, collection_name: str, limit: int = 20) -> list[ClusterRun]:
        return self._runs.list_cluster_runs(collection_name, limit)

    def people_settings(self, collection_name: str) -> PeopleSettings:
        return self._history.people_settings(collection_name)

    def set_people_settings(
        self,
        collection_name: str,
        match_history: bool | None = None,
        history_retention_days: int | None = None,
    ) -> PeopleSettings:
        return self._history.set_people_settings(
            collection_name, match_history, history_retention_days
        )

    def record_identifications(
        self, collection_name: str, identifications: Sequence[Identification]
    ) -> int:
        return self._history.record_identifications(collection_name, identifications)

    def identification_history(
        self,
        collection_name: str,
        person_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> tuple[list[Identification], str | None]:
        return self._history.identification_history(
            collection_name, person_id, since, until, limit, cursor
        )
