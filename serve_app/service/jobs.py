"""Album jobs as the API offers them: submit (a source URL or an uploaded archive), follow,
list, pause, resume, cancel, and read the failures. The work itself is done by workers
(`album_indexing.py`) that the Jobs deployment runs; this service only writes and reads the
jobs' durable records through the `JobQueue` port."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from serve_app.errors import InvalidParameter
from serve_app.service import params
from serve_app.service.album_sources import ArchiveSource, folder_source, parse_source
from serve_app.service.params import MAX_INDEX_FACES
from serve_app.service.ports import JobQueue
from serve_app.service.quality_filter import QualityFilter
from serve_app.store.jobs import FINAL_STATES, JOB_STATES, SKIP_EXISTING, ImageFailure, JobRecord

# Per-image timeouts a job may ask for (seconds).
MIN_IMAGE_TIMEOUT_S, MAX_IMAGE_TIMEOUT_S = 1.0, 3600.0
# Seconds between two progress events of a job's stream.
PROGRESS_INTERVAL_S = 1.0


def job_options(
    max_faces: int | None = None,
    quality_filter: str | None = None,
    skip_existing: str | None = None,
    image_timeout_s: float | None = None,
) -> dict[str, Any]:
    """A job's options, checked, as its record keeps them."""
    if max_faces is not None:
        max_faces = params.count("max_faces", max_faces, MAX_INDEX_FACES)
    if quality_filter is not None:
        quality_filter = QualityFilter.parse(quality_filter).value
    skip_existing = skip_existing or "hash"
    if skip_existing not in SKIP_EXISTING:
        raise InvalidParameter(f"skip_existing must be one of {', '.join(SKIP_EXISTING)}")
    if image_timeout_s is not None and not (
        MIN_IMAGE_TIMEOUT_S <= float(image_timeout_s) <= MAX_IMAGE_TIMEOUT_S
    ):
        raise InvalidParameter(
            f"image_timeout_s must be {MIN_IMAGE_TIMEOUT_S:g} to {MAX_IMAGE_TIMEOUT_S:g} seconds"
        )
    return {
        "max_faces": max_faces,
        "quality_filter": quality_filter,
        "skip_existing": skip_existing,
        "image_timeout_s": image_timeout_s,
    }


class JobService:
    """Album jobs over the `JobQueue` port."""

    def __init__(self, queue: JobQueue, uploads_dir: Path, folder_roots: list[Path]) -> None:
        self.queue = queue
        self.uploads_dir = uploads_dir
        self.folder_roots = folder_roots

    async def submit(self, collection_name: str, source: str, options: dict[str, Any]) -> JobRecord:
        """A job over an S3 prefix or a server-side folder (checked here: a folder outside
        the allowed roots or missing is a 4xx now, not a failed job later)."""
        kind, _, _ = parse_source(source)
        if kind == "folder":
            folder_source(source, self.folder_roots)
        return await self.queue.create_job(collection_name, source, kind, options)

    def new_upload_path(self, suffix: str) -> Path:
        """Where an uploaded archive is written (then handed to `submit_archive`)."""
        self.uploads_dir.mkdir(parents=True, exist_ok=True)
        return self.uploads_dir / f"{uuid.uuid4().hex}{suffix}"

    async def submit_archive(
        self, collection_name: str, path: Path, filename: str, options: dict[str, Any]
    ) -> JobRecord:
        """A job over an uploaded archive already on disk at `path` (removed if refused)."""
        try:
            await asyncio.to_thread(ArchiveSource, path)  # a 400 now if it is no archive
            options = {**options, "archive_path": str(path)}
            return await self.queue.create_job(
                collection_name, f"archive:{filename or path.name}", "archive", options
            )
        except BaseException:
            path.unlink(missing_ok=True)
            raise

    async def get(self, job_id: str) -> JobRecord:
        return await self.queue.get_job(job_id)

    async def list(
        self,
        collection: str | None = None,
        state: str | None = None,
        limit: int = params.DEFAULT_PAGE,
        cursor: str | None = None,
        *,
        within: list[str] | None = None,
    ) -> tuple[list[JobRecord], str | None]:
        """Newest first; `within`: only jobs of these collections (a scoped key's)."""
        if state is not None and state not in JOB_STATES:
            raise InvalidParameter(f"state must be one of {', '.join(JOB_STATES)}")
        limit = params.count("limit", limit, params.MAX_PAGE)
        return await self.queue.list_jobs(collection, state, limit, cursor, within)

    async def failures(
        self, job_id: str, limit: int = params.DEFAULT_PAGE, cursor: str | None = None
    ) -> tuple[list[ImageFailure], str | None]:
        limit = params.count("limit", limit, params.MAX_PAGE)
        return await self.queue.failures(job_id, limit, cursor)

    async def pause(self, job_id: str) -> JobRecord:
        return await self.queue.set_state(job_id, "paused", allowed_from=("queued", "running"))

    async def resume(self, job_id: str) -> JobRecord:
        return await self.queue.set_state(job_id, "running", allowed_from=("paused",))

    async def cancel(self, job_id: str) -> JobRecord:
        return await self.queue.set_state(
            job_id, "cancelled", allowed_from=("queued", "running", "paused")
        )

    async def progress(self, job_id: str) -> AsyncIterator[JobRecord]:
        """The job now, then again every PROGRESS_INTERVAL_S while it changes, until it is
        finished (the last record is the final one)."""
        last = None
        while True:
            job = await self.queue.get_job(job_id)
            if job != last:
                yield job
                last = job
            if job.state in FINAL_STATES:
                return
            await asyncio.sleep(PROGRESS_INTERVAL_S)
