"""What the store hands in and out for people (clustering, enrolment, identification
history): plain frozen values that pickle across the Search deployment."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from serve_app.store.records import FaceRecord, PersonRecord


@dataclass(frozen=True)
class ClusterSnapshot:
    """Every face of a collection as clustering sees it, row-aligned."""

    face_ids: list[str]
    image_ids: list[str]
    person_ids: list[str | None]  # the client's id of each face's person
    confirmed: np.ndarray  # (n,) bool: put there by a user
    vectors: np.ndarray  # (n, dim) float32
    rejections: list[tuple[str, str]]  # (face id, person id): "not this person"
    generated_persons: list[str]  # persons clustering made (it may reuse or remove them)


@dataclass(frozen=True)
class ClusterPlan:
    """What a clustering run decided. `groups`: person id (None: a new one) -> face ids;
    `expected`: face id -> the person id it had when the snapshot was read (a face changed
    since, by a user or another run, is left alone)."""

    groups: list[tuple[str | None, list[str]]]
    released: list[str]  # faces to belong to nobody (too small a group after a full run)
    expected: dict[str, str | None]


@dataclass(frozen=True)
class ClusterOutcome:
    assigned: int  # faces whose person changed to a person
    released: int  # faces that no longer belong to a person
    created: list[str]  # new persons' ids
    removed: list[str]  # generated persons left without faces, deleted
    skipped: int  # faces changed by someone else meanwhile


@dataclass(frozen=True)
class ClusterRun:
    run_id: str
    collection: str
    mode: str
    state: str  # running | succeeded | failed | interrupted
    parameters: dict[str, Any]
    result: dict[str, Any] | None
    error: str | None
    created_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class PeopleSettings:
    match_history: bool
    history_retention_days: int


@dataclass(frozen=True)
class CollectionStats:
    faces: int
    persons: int
    unassigned_faces: int
    confirmed_faces: int
    images: int
    generated_persons: int
    model_version: str
    last_cluster_run: ClusterRun | None


@dataclass(frozen=True)
class Identification:
    """One face identified (a history row to write, or read back)."""

    person_id: str | None  # None: unknown
    similarity: float | None
    bounding_box: dict[str, Any]
    source: str | None = None
    key_id: str | None = None
    created_at: datetime | None = None  # set by the store


@dataclass(frozen=True)
class EnrollOutcome:
    person: PersonRecord
    face: FaceRecord
    created_person: bool


@dataclass(frozen=True)
class HistoryPage:
    items: list[Identification]
    next_cursor: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
