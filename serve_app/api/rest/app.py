"""Builds the REST app: routers, error handlers, metrics, the generated OpenAPI document."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi_offline import FastAPIOffline

from serve_app import __version__
from serve_app.api.metrics import ApiMetrics, RequestMetricsMiddleware
from serve_app.api.rekognition import rekognition_route
from serve_app.api.rest import (
    audit,
    clusters,
    collections,
    erasure,
    faces,
    history,
    identify,
    jobs,
    keys,
    operations,
    person_decisions,
    persons,
    stateless,
    stats,
)
from serve_app.api.rest.auth import AuditMiddleware
from serve_app.api.rest.errors import install_error_handlers
from serve_app.api.rest.operations import ReadinessCheck
from serve_app.config import ImageLimits, RekognitionConfig
from serve_app.service.access import AccessControl
from serve_app.service.services import Services

DESCRIPTION = """\
Detect faces, index them in collections, search and compare them, and group them into persons.

Images travel as multipart file parts or as base64 strings in JSON. Similarities are
calibrated percentages (0-100), the same scale for every model pack. Errors always have the
shape `{"error": {"code", "message"}}`.

```
curl -X POST http://127.0.0.1:8000/v1/detect -F image=@image.jpg
curl -X POST http://127.0.0.1:8000/v1/collections -H 'content-type: application/json' \\
     -d '{"name": "album"}'
curl -X POST http://127.0.0.1:8000/v1/collections/album/faces -F image=@photo.jpg \\
     -F external_image_id=photo.jpg
curl -X POST http://127.0.0.1:8000/v1/collections/album/search -F image=@query.jpg
```

The Amazon Rekognition-compatible API (AWS JSON 1.1, SigV4) is at `POST /`; see the README.
"""

ROUTERS = (
    stateless,
    collections,
    faces,
    persons,
    *(clusters, person_decisions, stats, identify, history),  # people
    jobs,
    erasure,
    keys,
    audit,
    operations,
)
SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "An API key's secret."},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}


def _document(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI 3.1 document, generated once from the routes and their models.

    Validation errors are our 400 `invalid_parameter`, never FastAPI's 422 body, so the 422
    entries FastAPI adds for them (and their schemas) are left out; a 422 we do answer
    (`model_not_available`) is declared by its route with the error shape.
    """
    if app.openapi_schema is None:
        document = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        for item in document.get("paths", {}).values():
            for operation in item.values():
                response = operation.get("responses", {}).get("422", {})
                if "HTTPValidationError" in str(response):
                    del operation["responses"]["422"]
        components = document.setdefault("components", {})
        components["securitySchemes"] = SECURITY_SCHEMES
        # Every /v1 route takes a key; probes, metrics and the docs are open.
        for path, item in document.get("paths", {}).items():
            if path.startswith("/v1/"):
                for operation in item.values():
                    operation["security"] = [{"bearer": []}, {"apiKey": []}]
        schemas = components.get("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        app.openapi_schema = document
    return app.openapi_schema


def build_rest_app(
    services: Services,
    readiness: ReadinessCheck | None = None,
    *,
    max_image_bytes: int = ImageLimits.max_bytes,
    rekognition: RekognitionConfig | None = None,
    max_archive_bytes: int = 2 * 1024**3,
    job_metrics: Callable[[], Awaitable[dict[str, Any]]] | None = None,
    access: AccessControl | None = None,
) -> FastAPI:
    """The REST v1 app over `services`.

    `readiness` answers `/readyz` (e.g. `{"models": True, "database": True}`); without one the
    app is ready as soon as it serves. `max_image_bytes` (FACESERVE_MAX_IMAGE_BYTES) sizes the
    request-body cap; the image itself is checked again by the service's pipeline.
    `rekognition`: also serve the Rekognition-compatible API at `POST /`.
    `max_archive_bytes` (FACESERVE_JOB_ARCHIVE_MAX_BYTES) caps an album job's uploaded archive.
    `access`: authenticate, authorize, rate-limit and audit every /v1 route (and the
    Rekognition API) with it; None serves them open (in-process tests, embedded use).
    """
    app = FastAPIOffline(
        title="faceserve",
        version=__version__,
        description=DESCRIPTION,
        redoc_url=None,
        swagger_ui_parameters={"tryItOutEnabled": True},
    )
    app.state.services = services
    app.state.access = access
    app.state.readiness = readiness
    app.state.max_image_bytes = max_image_bytes
    app.state.max_archive_bytes = max_archive_bytes
    app.state.job_metrics = job_metrics
    app.state.metrics = metrics = ApiMetrics()
    for module in ROUTERS:
        # The routes themselves, not `include_router`: FastAPI 0.16x wraps an included router
        # in one opaque route, which would hide the route templates the metrics label by.
        app.router.routes.extend(module.router.routes)
    if rekognition is not None:
        app.router.routes.append(rekognition_route(services, rekognition, access))
    app.openapi = lambda: _document(app)  # type: ignore[method-assign]
    install_error_handlers(app)
    if access is not None:
        app.add_middleware(AuditMiddleware, access=access)
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics, routes=app.router.routes)
    return app
