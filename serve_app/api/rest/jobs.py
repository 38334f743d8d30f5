"""Album jobs: submit (a source URL, or an uploaded archive), follow, list, pause, resume,
cancel, failures, and a live progress stream (server-sent events)."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import PurePosixPath
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import ValidationError

from serve_app.api.body import read_upload
from serve_app.api.rest.auth import CallerDep, allow, audit_note
from serve_app.api.rest.bodies import ReadBody
from serve_app.api.rest.deps import ServicesDep
from serve_app.api.rest.errors import error_responses, invalid
from serve_app.api.rest.models_jobs import (
    FailurePage,
    ImageFailureOut,
    JobOptions,
    JobOut,
    JobPage,
    JobState,
    SubmitJobRequest,
)
from serve_app.errors import FaceserveError, NotFound
from serve_app.service import params
from serve_app.service.access import Principal
from serve_app.service.jobs import JobService, job_options
from serve_app.store.jobs import FINAL_STATES
from serve_app.store.validation import COLLECTION_NAME_PATTERN

router = APIRouter(tags=["jobs"])
JOB = "/v1/jobs/{job_id}"

SUBMIT = ReadBody(SubmitJobRequest)
ARCHIVE_SUFFIXES = (".zip", ".tar")

CollectionFilter = Annotated[
    str | None,
    Query(pattern=f"^{COLLECTION_NAME_PATTERN}$", description="Only this collection's jobs."),
]
PageLimit = Annotated[int, Query(ge=1, le=params.MAX_PAGE, description="Most items on this page.")]
Cursor = Annotated[
    str | None, Query(description="`next_cursor` of the previous page; absent: the first.")
]


class JobsUnavailable(FaceserveError):
    code = "jobs_unavailable"
    http_status = 503


def _jobs(services: Any) -> JobService:
    if services.jobs is None:
        raise JobsUnavailable("album jobs are not run by this service")
    return services.jobs


async def _visible_job(jobs: JobService, job_id: str, caller: Principal) -> Any:
    """The job, if the caller's key may see its collection (else it does not exist)."""
    job = await jobs.get(job_id)
    if not caller.sees(job.collection):
        raise NotFound(f"job {job_id} not found")
    return job


async def _change(
    job_id: str, request: Request, services: Any, caller: Principal, action: str
) -> JobOut:
    """Pause, resume or cancel a job the caller may see, noted in the audit log."""
    jobs = _jobs(services)
    job = await _visible_job(jobs, job_id, caller)
    audit_note(request, collection=job.collection, job_id=job.job_id)
    return JobOut.of(await getattr(jobs, action)(job.job_id))


def _submit_openapi() -> dict[str, Any]:
    options = JobOptions.model_json_schema()
    form = {name: schema for name, schema in options.get("properties", {}).items()}
    form["archive"] = {
        "type": "string",
        "format": "binary",
        "description": "A .zip or uncompressed .tar of photos (streamed to disk, up to "
        "FACESERVE_JOB_ARCHIVE_MAX_BYTES).",
    }
    json_body = SUBMIT.openapi["requestBody"]["content"]["application/json"]
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": json_body,
                "multipart/form-data": {
                    "schema": {"type": "object", "properties": form, "required": ["archive"]}
                },
            },
        }
    }


async def _save_upload(jobs: JobService, upload: Any) -> tuple[Any, str]:
    filename = PurePosixPath(upload.filename or "album.zip").name
    suffix = PurePosixPath(filename).suffix.lower()
    path = jobs.new_upload_path(suffix if suffix in ARCHIVE_SUFFIXES else ".archive")

    def copy() -> None:
        upload.file.seek(0)
        with open(path, "wb") as out:
            shutil.copyfileobj(upload.file, out, 1024 * 1024)

    try:
        await asyncio.to_thread(copy)
    finally:
        await upload.close()
    return path, filename


@router.post(
    "/v1/collections/{name}/jobs",
    summary="Index an album in the background",
    description="Starts a job that indexes every image of an S3 prefix, a server-side folder "
    "or an uploaded archive (multipart part `archive`). Answers 202 with the job at once; "
    "follow it with `GET /v1/jobs/{job_id}` or its event stream.",
    status_code=202,
    response_model=JobOut,
    responses=error_responses(404, 413, 415),
    openapi_extra=_submit_openapi(),
    dependencies=[allow("write")],
)
async def submit_job(name: str, request: Request, services: ServicesDep) -> JobOut:
    jobs = _jobs(services)
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "multipart/form-data":
        fields, upload = await read_upload(request, request.app.state.max_archive_bytes, "archive")
        try:
            options = JobOptions.model_validate(fields)
        except ValidationError as exc:
            await upload.close()
            raise invalid(exc) from None
        path, filename = await _save_upload(jobs, upload)
        job = await jobs.submit_archive(name, path, filename, job_options(**options.model_dump()))
    else:
        body = await SUBMIT(request)
        f = body.fields
        options = job_options(f.max_faces, f.quality_filter, f.skip_existing, f.image_timeout_s)
        job = await jobs.submit(name, f.source, options)
    audit_note(request, job_id=job.job_id, source=job.source)
    return JobOut.of(job)


@router.get(
    "/v1/jobs",
    summary="List jobs",
    description="Newest first; filtered by collection and/or state.",
    response_model=JobPage,
    responses=error_responses(),
    dependencies=[allow("read")],
)
async def list_jobs(
    services: ServicesDep,
    caller: CallerDep,
    collection: CollectionFilter = None,
    state: JobState | None = None,
    limit: PageLimit = params.DEFAULT_PAGE,
    cursor: Cursor = None,
) -> JobPage:
    if collection is not None and not caller.sees(collection):
        return JobPage(jobs=[], next_cursor=None)
    visible = None if caller.collections is None else sorted(caller.collections)
    found, following = await _jobs(services).list(
        collection, state, limit, cursor or None, within=visible
    )
    return JobPage(jobs=[JobOut.of(j) for j in found], next_cursor=following)


@router.get(
    JOB,
    summary="A job and its progress",
    response_model=JobOut,
    responses=error_responses(404),
    dependencies=[allow("read")],
)
async def get_job(job_id: str, services: ServicesDep, caller: CallerDep) -> JobOut:
    return JobOut.of(await _visible_job(_jobs(services), job_id, caller))


@router.get(
    JOB + "/failures",
    summary="The images a job could not index",
    description="In source order, with a reason code and a message each.",
    response_model=FailurePage,
    responses=error_responses(404),
    dependencies=[allow("read")],
)
async def job_failures(
    job_id: str,
    services: ServicesDep,
    caller: CallerDep,
    limit: PageLimit = params.DEFAULT_PAGE,
    cursor: Cursor = None,
) -> FailurePage:
    await _visible_job(_jobs(services), job_id, caller)
    failures, following = await _jobs(services).failures(job_id, limit, cursor or None)
    return FailurePage(failures=[ImageFailureOut.of(f) for f in failures], next_cursor=following)


@router.post(
    JOB + "/pause",
    summary="Pause a job",
    response_model=JobOut,
    responses=error_responses(404),
    dependencies=[allow("write")],
)
async def pause_job(
    job_id: str, request: Request, services: ServicesDep, caller: CallerDep
) -> JobOut:
    return await _change(job_id, request, services, caller, "pause")


@router.post(
    JOB + "/resume",
    summary="Resume a paused job",
    response_model=JobOut,
    responses=error_responses(404),
    dependencies=[allow("write")],
)
async def resume_job(
    job_id: str, request: Request, services: ServicesDep, caller: CallerDep
) -> JobOut:
    return await _change(job_id, request, services, caller, "resume")


@router.post(
    JOB + "/cancel",
    summary="Cancel a job",
    description="Images already indexed stay; the rest are left pending.",
    response_model=JobOut,
    responses=error_responses(404),
    dependencies=[allow("write")],
)
async def cancel_job(
    job_id: str, request: Request, services: ServicesDep, caller: CallerDep
) -> JobOut:
    return await _change(job_id, request, services, caller, "cancel")


def _event(kind: str, data: dict[str, Any]) -> str:
    return f"event: {kind}\ndata: {json.dumps(data)}\n\n"


@router.get(
    JOB + "/events",
    summary="A job's progress as server-sent events",
    description="`event: progress` with the job as JSON every second while it changes, then "
    "`event: end` with the final job.",
    responses={200: {"content": {"text/event-stream": {}}}, **error_responses(404)},
    dependencies=[allow("read")],
)
async def job_events(job_id: str, services: ServicesDep, caller: CallerDep) -> StreamingResponse:
    jobs = _jobs(services)
    first = await _visible_job(jobs, job_id, caller)  # a 404 before the stream starts

    async def events() -> AsyncIterator[str]:
        try:
            async for job in jobs.progress(first.job_id):
                kind = "end" if job.state in FINAL_STATES else "progress"
                yield _event(kind, JobOut.of(job).model_dump(mode="json"))
        except FaceserveError as err:
            yield _event("error", {"code": err.code, "message": err.message})

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )
