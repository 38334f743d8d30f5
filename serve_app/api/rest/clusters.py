"""Clustering runs of a collection: start one (it runs in the background), read one, list
the latest."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from serve_app.api.rest.auth import allow
from serve_app.api.rest.bodies import Parsed, ReadBody
from serve_app.api.rest.deps import ServicesDep
from serve_app.api.rest.errors import error_responses
from serve_app.api.rest.models_people import (
    ClusterRunList,
    ClusterRunOut,
    StartClusteringRequest,
)
from serve_app.store.cluster_runs import MAX_RUNS_LISTED

router = APIRouter(tags=["clustering"])
CLUSTERS = "/v1/collections/{name}/clusters"
START = ReadBody(StartClusteringRequest)


@router.post(
    CLUSTERS,
    summary="Group the collection's faces into persons",
    description="Starts a run in the background and answers 202 with it; poll "
    "`GET .../clusters/{run_id}`. Faces confirmed by a user never move; rejected faces never "
    "return to the person; two faces of one image never share a person. 409 while a run of "
    "the collection is still running.",
    status_code=202,
    response_model=ClusterRunOut,
    responses=error_responses(404, 409, 413, 415, 422),
    openapi_extra=START.openapi,
    dependencies=[allow("write")],
)
async def start_clustering(
    name: str,
    services: ServicesDep,
    body: Annotated[Parsed[StartClusteringRequest], Depends(START)],
) -> ClusterRunOut:
    f = body.fields
    run = await services.clusters.start(name, f.mode, f.threshold, f.min_faces)
    return ClusterRunOut.of(run)


@router.get(
    CLUSTERS,
    summary="The latest clustering runs",
    response_model=ClusterRunList,
    responses=error_responses(404),
    dependencies=[allow("read")],
)
async def list_clustering_runs(
    name: str,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=MAX_RUNS_LISTED)] = 20,
) -> ClusterRunList:
    runs = await services.clusters.list_runs(name, limit)
    return ClusterRunList(runs=[ClusterRunOut.of(r) for r in runs])


@router.get(
    CLUSTERS + "/{run_id}",
    summary="A clustering run",
    description="`running`, then `succeeded` (with its counts) or `failed`; `interrupted` if "
    "its process ended before it finished (start it again: clustering is idempotent).",
    response_model=ClusterRunOut,
    responses=error_responses(404),
    dependencies=[allow("read")],
)
async def get_clustering_run(name: str, run_id: str, services: ServicesDep) -> ClusterRunOut:
    return ClusterRunOut.of(await services.clusters.get_run(name, run_id))
