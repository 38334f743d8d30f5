"""Health, readiness and metrics: open to probes and scrapers."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from serve_app.api.rest.auth import Requirement
from serve_app.api.rest.models import Health, Readiness

logger = logging.getLogger(__name__)

# What answers /readyz: check name -> passed (e.g. {"models": True, "database": True}).
ReadinessCheck = Callable[[], Awaitable[dict[str, bool]]]

router = APIRouter(tags=["operations"])
# Who may read /metrics when it is not public.
METRICS_READER = Requirement("read")


@router.get("/healthz", summary="Liveness: the process answers", response_model=Health)
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    summary="Readiness: models loaded and the database answering",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Not ready: a check failed."}},
)
async def readyz(request: Request) -> Response:
    readiness: ReadinessCheck | None = request.app.state.readiness
    if readiness is None:
        return JSONResponse({"status": "ready", "checks": {}})
    try:
        checks = {str(k): bool(v) for k, v in (await readiness()).items()}
    except Exception:  # noqa: BLE001 - readiness reports, it does not raise
        logger.exception("readiness check raised")
        checks = {"readiness_check": False}
    ready = all(checks.values())
    body = Readiness(status="ready" if ready else "not_ready", checks=checks)
    return JSONResponse(body.model_dump(), 200 if ready else 503)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(request: Request) -> Response:
    access = request.app.state.access
    if access is not None and not access.metrics_public:  # FACESERVE_METRICS_PUBLIC=false
        await METRICS_READER(request)
    jobs = None
    if request.app.state.job_metrics is not None:
        try:
            jobs = await request.app.state.job_metrics()
        except Exception:  # noqa: BLE001 - the other metrics are still worth scraping
            logger.warning("album job metrics unavailable", exc_info=True)
    return request.app.state.metrics.exposition(request, jobs)
