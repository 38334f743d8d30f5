"""Album jobs on the wire: the submit body, the job, its failures (pydantic v2)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from serve_app.api.rest.models import QualityLevel, RequestBody
from serve_app.service.jobs import MAX_IMAGE_TIMEOUT_S, MIN_IMAGE_TIMEOUT_S
from serve_app.service.params import MAX_INDEX_FACES
from serve_app.store.jobs import ImageFailure, JobRecord

JobState = Literal["queued", "running", "paused", "succeeded", "failed", "cancelled"]
SkipExisting = Literal["hash", "external_image_id", "none"]


class JobOptions(RequestBody):
    max_faces: int | None = Field(
        None, ge=1, le=MAX_INDEX_FACES, description="Most faces indexed per image (largest first)."
    )
    quality_filter: QualityLevel | None = Field(
        None, description="Faces below this quality are not indexed (default AUTO)."
    )
    skip_existing: SkipExisting = Field(
        "hash",
        description="Skip an image the collection already holds: same content (`hash`), same "
        "`external_image_id` (the key, sanitised), or never (`none`).",
    )
    image_timeout_s: float | None = Field(
        None,
        ge=MIN_IMAGE_TIMEOUT_S,
        le=MAX_IMAGE_TIMEOUT_S,
        description="Seconds one image may take before it is retried (default: the service's).",
    )


class SubmitJobRequest(JobOptions):
    source: str = Field(
        description="`s3://bucket/prefix` or `file:///folder` (inside the service's allowed "
        "roots). To index an archive, send it as the multipart file part `archive` instead.",
        examples=["s3://photos/2024/"],
    )


class ImageCountsOut(BaseModel):
    total: int
    done: int
    skipped: int
    failed: int
    pending: int


class JobOut(BaseModel):
    job_id: str
    collection: str
    source: str
    state: JobState
    error: str | None = Field(description="Why the job itself failed (its source), if it did.")
    listed: bool = Field(description="Whether every image of the source is counted in `total`.")
    ignored_files: int = Field(description="Files of the source that are not images by name.")
    images: ImageCountsOut
    faces_indexed: int
    images_per_second: float | None
    eta_seconds: float | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, job: JobRecord) -> JobOut:
        return cls(
            job_id=job.job_id,
            collection=job.collection,
            source=job.source,
            state=job.state,  # type: ignore[arg-type]
            error=job.error,
            listed=job.listed,
            ignored_files=job.ignored_files,
            images=ImageCountsOut(**job.images.__dict__),
            faces_indexed=job.faces_indexed,
            images_per_second=None
            if job.images_per_second is None
            else round(job.images_per_second, 2),
            eta_seconds=None if job.eta_seconds is None else round(job.eta_seconds, 1),
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
        )


class JobPage(BaseModel):
    jobs: list[JobOut]
    next_cursor: str | None


class ImageFailureOut(BaseModel):
    key: str = Field(description="The object key, relative path or archive member.")
    external_image_id: str
    reason: str = Field(
        description="`invalid_image`, `unsupported_format`, `too_large`, `not_found`, "
        "`unsafe_path`, `suspicious_archive`, `read_error`, `timeout` or `internal_error`."
    )
    message: str
    attempts: int
    finished_at: datetime | None

    @classmethod
    def of(cls, failure: ImageFailure) -> ImageFailureOut:
        return cls(
            key=failure.key,
            external_image_id=failure.external_image_id,
            reason=failure.reason,
            message=failure.message,
            attempts=failure.attempts,
            finished_at=failure.finished_at,
        )


class FailurePage(BaseModel):
    failures: list[ImageFailureOut]
    next_cursor: str | None
