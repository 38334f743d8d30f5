"""REST wire shapes of the people features: clustering runs, person decisions (name,
split, reject), persons' faces, stats, enrolment, identification, recognition, history."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field

from serve_app.api.rest.models import (
    BoundingBox,
    DetectedFaceOut,
    FaceIds,
    FaceOut,
    JsonObject,
    PersonOut,
    RequestBody,
    threshold,
)
from serve_app.service import clustering, params, thresholds
from serve_app.service.identify import IdentifyResult, RecognizeResult
from serve_app.service.people import ServiceStats, SplitResult
from serve_app.store.history import MAX_RETENTION_DAYS
from serve_app.store.people_records import (
    ClusterRun,
    CollectionStats,
    EnrollOutcome,
    Identification,
    PeopleSettings,
)

# --- requests ---------------------------------------------------------------------------------


class StartClusteringRequest(RequestBody):
    mode: Literal["incremental", "full"] = Field(
        "incremental",
        description="`incremental`: faces of nobody join persons or found new ones. `full`: "
        "every face not confirmed by a user is regrouped.",
    )
    threshold: float | None = threshold(
        clustering.DEFAULT_THRESHOLD,
        "Groups merge while the average similarity (0-100) of their face pairs reaches this.",
    )
    min_faces: int | None = Field(
        None,
        ge=1,
        le=clustering.MAX_MIN_FACES,
        description=f"Fewest faces a new person is founded with "
        f"(default {clustering.DEFAULT_MIN_FACES}).",
    )


class UpdatePersonRequest(RequestBody):
    name: str | None = Field(
        None, min_length=1, max_length=255, description="Display name; null clears it."
    )
    metadata: JsonObject | None = Field(None, description="Replaces the person's metadata.")


class SplitPersonRequest(RequestBody):
    face_ids: FaceIds
    new_person_id: str | None = Field(
        None, description="Id of the new person; default: a generated `p-...`."
    )


class RejectFaceRequest(RequestBody):
    """No fields: an empty body (or `{}`) is the whole request."""


class EnrollRequest(RequestBody):
    IMAGES: ClassVar[tuple[str, ...]] = ("image",)
    person_id: str = Field(description="Your id for the person; created if new.")
    name: str | None = Field(None, min_length=1, max_length=255)
    metadata: JsonObject | None = None
    external_image_id: str | None = Field(None, min_length=1, max_length=params.MAX_EXTERNAL_ID)
    threshold: float | None = threshold(
        thresholds.ENROLL_CONFLICT,
        "Refuse the face if it reaches this similarity (0-100) with another person.",
    )


class IdentifyRequest(RequestBody):
    IMAGES: ClassVar[tuple[str, ...]] = ("image",)
    threshold: float | None = threshold(thresholds.IDENTIFY)
    max_faces: int | None = Field(None, ge=1, le=params.MAX_INDEX_FACES)
    source: str | None = Field(
        None, min_length=1, max_length=255, description="Kept in the history, e.g. `door-cam`."
    )


class RecognizeRequest(RequestBody):
    IMAGES: ClassVar[tuple[str, ...]] = ("image",)
    max_faces: int | None = Field(None, ge=1, le=params.MAX_INDEX_FACES)


class PeopleSettingsRequest(RequestBody):
    match_history: bool | None = Field(None, description="Keep each identification.")
    history_retention_days: int | None = Field(None, ge=1, le=MAX_RETENTION_DAYS)


# --- responses --------------------------------------------------------------------------------


class ClusterRunOut(BaseModel):
    run_id: str
    collection: str
    mode: str
    state: Literal["running", "succeeded", "failed", "interrupted"]
    parameters: JsonObject
    result: JsonObject | None
    error: str | None
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, run: ClusterRun) -> ClusterRunOut:
        return cls(**vars(run))


class ClusterRunList(BaseModel):
    runs: list[ClusterRunOut]


class SplitResponse(BaseModel):
    person: PersonOut
    new_person: PersonOut

    @classmethod
    def of(cls, r: SplitResult) -> SplitResponse:
        return cls(person=PersonOut.of(r.person), new_person=PersonOut.of(r.new_person))


class PersonFacePage(BaseModel):
    faces: list[FaceOut]
    next_cursor: str | None


class CollectionStatsOut(BaseModel):
    faces: int
    persons: int
    unassigned_faces: int
    confirmed_faces: int
    images: int
    generated_persons: int
    model_version: str
    last_cluster_run: ClusterRunOut | None

    @classmethod
    def of(cls, s: CollectionStats) -> CollectionStatsOut:
        values: dict[str, Any] = vars(s) | {
            "last_cluster_run": None
            if s.last_cluster_run is None
            else ClusterRunOut.of(s.last_cluster_run)
        }
        return cls(**values)


class ModelPackStats(BaseModel):
    collections: int
    faces: int
    persons: int


class ServiceStatsOut(BaseModel):
    collections: int
    faces: int
    persons: int
    unassigned_faces: int
    images: int
    per_model_pack: dict[str, ModelPackStats]
    by_collection: dict[str, CollectionStatsOut]

    @classmethod
    def of(cls, s: ServiceStats) -> ServiceStatsOut:
        return cls(
            collections=len(s.collections),
            faces=s.total("faces"),
            persons=s.total("persons"),
            unassigned_faces=s.total("unassigned_faces"),
            images=s.total("images"),
            per_model_pack={k: ModelPackStats(**v) for k, v in s.per_model().items()},
            by_collection={k: CollectionStatsOut.of(v) for k, v in s.collections.items()},
        )


class EnrollResponse(BaseModel):
    person: PersonOut
    face: FaceOut
    created_person: bool

    @classmethod
    def of(cls, r: EnrollOutcome) -> EnrollResponse:
        return cls(
            person=PersonOut.of(r.person), face=FaceOut.of(r.face), created_person=r.created_person
        )


class IdentifiedFaceOut(BaseModel):
    face: DetectedFaceOut
    person: PersonOut | None = Field(description="Null: unknown.")
    similarity: float | None


class IdentifyResponse(BaseModel):
    image_width: int
    image_height: int
    model_version: str
    faces: list[IdentifiedFaceOut] = Field(description="Every face, largest first.")
    recorded: int = Field(description="History rows written (0 unless match_history is on).")

    @classmethod
    def of(cls, r: IdentifyResult) -> IdentifyResponse:
        return cls(
            image_width=r.image_width,
            image_height=r.image_height,
            model_version=r.collection.model_version,
            faces=[
                IdentifiedFaceOut(
                    face=DetectedFaceOut.of(f.face),
                    person=None if f.person is None else PersonOut.of(f.person),
                    similarity=None if f.similarity is None else round(f.similarity, 3),
                )
                for f in r.faces
            ],
            recorded=r.recorded,
        )


class RecognizedFaceOut(BaseModel):
    face: DetectedFaceOut
    embedding: list[float] = Field(description="L2-normalised; compare with a dot product.")


class RecognizeResponse(BaseModel):
    model_version: str
    image_width: int
    image_height: int
    faces: list[RecognizedFaceOut]

    @classmethod
    def of(cls, r: RecognizeResult) -> RecognizeResponse:
        return cls(
            model_version=r.model_version,
            image_width=r.image_width,
            image_height=r.image_height,
            faces=[
                RecognizedFaceOut(
                    face=DetectedFaceOut.of(f.face), embedding=[float(x) for x in f.embedding]
                )
                for f in r.faces
            ],
        )


class IdentificationOut(BaseModel):
    person_id: str | None = Field(description="Null: an unknown face.")
    similarity: float | None
    bounding_box: BoundingBox
    source: str | None
    key_id: str | None
    created_at: datetime

    @classmethod
    def of(cls, i: Identification) -> IdentificationOut:
        return cls(**vars(i))


class HistoryPage(BaseModel):
    identifications: list[IdentificationOut]
    next_cursor: str | None


class PeopleSettingsOut(BaseModel):
    match_history: bool
    history_retention_days: int

    @classmethod
    def of(cls, s: PeopleSettings) -> PeopleSettingsOut:
        return cls(**vars(s))
