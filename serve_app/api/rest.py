"""REST API v1: a thin Starlette adapter over `FaceService` (and its `persons`).

Each route parses the request's shape, calls one service method and serialises the result.
Thresholds, filtering and ranking are the service's; errors are the service's exceptions
mapped to `{"error": {"code", "message"}}` at this edge.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from serve_app.api.docs import render_docs
from serve_app.api.metrics import ApiMetrics, RequestMetricsMiddleware
from serve_app.api.openapi import openapi_document
from serve_app.api.payload import Payload, parse_boolean, parse_integer
from serve_app.api.rekognition import rekognition_route
from serve_app.api.serialize import (
    association_json,
    collection_json,
    compare_json,
    face_json,
    index_json,
    person_json,
    person_search_json,
    search_json,
)
from serve_app.config import ImageLimits, RekognitionConfig
from serve_app.errors import FaceserveError, InvalidParameter, NotFound
from serve_app.service.faces import FaceService

logger = logging.getLogger(__name__)

Readiness = Callable[[], Awaitable[dict[str, bool]]]

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 400: "invalid_request"}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status, headers=headers)


async def _service_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, FaceserveError)
    if exc.http_status >= 500:
        logger.error("%s %s failed: %s", request.method, request.url.path, exc.message)
    # A dependency that is down for a moment (database, Pinecone): tell clients when to retry.
    headers = {"Retry-After": "2"} if exc.http_status == 503 else None
    return error_response(exc.http_status, exc.code, exc.message, headers=headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    if exc.status_code == 404:
        message = f"no route {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
    else:
        message = exc.detail
    return error_response(exc.status_code, code, message, headers=exc.headers)


async def _internal_error(request: Request, exc: Exception) -> Response:
    # The traceback goes to the log, never to the client.
    logger.error("%s %s raised", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "internal error; the server log has details")


class RestHandlers:
    """The endpoints, bound to one service."""

    def __init__(
        self,
        service: FaceService,
        max_image_bytes: int,
        metrics: ApiMetrics,
        readiness: Readiness | None,
    ) -> None:
        self.service = service
        self.max_image_bytes = max_image_bytes
        self.metrics = metrics
        self.readiness = readiness
        self.document = openapi_document()
        self.docs_page = render_docs(self.document)

    async def _payload(self, request: Request, images: int = 0) -> Payload:
        return await Payload.read(request, self.max_image_bytes, images)

    # Stateless ---------------------------------------------------------------------------

    async def detect(self, request: Request) -> Response:
        payload = await self._payload(request, images=1)
        found = await self.service.detect(payload.image("image"))
        body = {"model_version": self.service.default_pipeline.model_version}
        return JSONResponse(body | found.to_dict())

    async def compare(self, request: Request) -> Response:
        payload = await self._payload(request, images=2)
        source, target = payload.image("source"), payload.image("target")
        result = await self.service.compare(source, target, payload.number("threshold"))
        return JSONResponse(compare_json(result))

    # Collections -------------------------------------------------------------------------

    async def create_collection(self, request: Request) -> Response:
        payload = await self._payload(request)
        name = payload.text("name")
        if not name:
            raise InvalidParameter("name is required")
        collection = await self.service.create_collection(
            name,
            payload.text("model_pack"),
            payload.json_object("metadata"),
            vector_backend=payload.text("vector_backend"),
            vector_options=payload.json_object("vector_options"),
        )
        return JSONResponse(collection_json(collection), 201)

    async def list_collections(self, request: Request) -> Response:
        collections = await self.service.list_collections()
        return JSONResponse({"collections": [collection_json(c) for c in collections]})

    async def describe_collection(self, request: Request) -> Response:
        collection = await self.service.describe_collection(request.path_params["name"])
        return JSONResponse(collection_json(collection))

    async def delete_collection(self, request: Request) -> Response:
        await self.service.delete_collection(request.path_params["name"])
        return Response(status_code=204)

    # Faces -------------------------------------------------------------------------------

    async def index_faces(self, request: Request) -> Response:
        payload = await self._payload(request, images=1)
        result = await self.service.index_faces(
            request.path_params["name"],
            payload.image("image"),
            external_image_id=payload.text("external_image_id"),
            max_faces=payload.integer("max_faces"),
            quality_filter=payload.text("quality_filter"),
            metadata=payload.json_object("metadata"),
        )
        self.metrics.faces_indexed.labels(result.collection.name).inc(len(result.indexed))
        return JSONResponse(index_json(result))

    async def list_faces(self, request: Request) -> Response:
        query = request.query_params
        options: dict = {"cursor": query.get("cursor") or None}
        if "limit" in query:
            options["limit"] = parse_integer("limit", query["limit"])
        faces, next_cursor = await self.service.list_faces(request.path_params["name"], **options)
        return JSONResponse({"faces": [face_json(f) for f in faces], "next_cursor": next_cursor})

    async def delete_face(self, request: Request) -> Response:
        name, face_id = request.path_params["name"], request.path_params["face_id"]
        deleted = await self.service.delete_faces(name, [face_id])
        if not deleted:
            raise NotFound(f"face {face_id} not found in collection {name!r}")
        return JSONResponse({"deleted": deleted})

    # Search ------------------------------------------------------------------------------

    async def search_by_image(self, request: Request) -> Response:
        payload = await self._payload(request, images=1)
        result = await self.service.search_by_image(
            request.path_params["name"],
            payload.image("image"),
            threshold=payload.number("threshold"),
            max_results=payload.integer("max_results"),
        )
        return JSONResponse(search_json(result))

    async def search_by_face_id(self, request: Request) -> Response:
        payload = await self._payload(request)
        result = await self.service.search_by_face_id(
            request.path_params["name"],
            request.path_params["face_id"],
            threshold=payload.number("threshold"),
            max_results=payload.integer("max_results"),
        )
        return JSONResponse(search_json(result))

    # Persons -----------------------------------------------------------------------------

    async def create_person(self, request: Request) -> Response:
        payload = await self._payload(request)
        person_id = payload.text("person_id")
        if not person_id:
            raise InvalidParameter("person_id is required")
        person = await self.service.persons.create_person(
            request.path_params["name"],
            person_id,
            payload.json_object("metadata"),
            request_token=payload.text("request_token"),
        )
        return JSONResponse(person_json(person), 201)

    async def list_persons(self, request: Request) -> Response:
        query = request.query_params
        options: dict = {"cursor": query.get("cursor") or None}
        if "limit" in query:
            options["limit"] = parse_integer("limit", query["limit"])
        persons, next_cursor = await self.service.persons.list_persons(
            request.path_params["name"], **options
        )
        body = {"persons": [person_json(p) for p in persons], "next_cursor": next_cursor}
        return JSONResponse(body)

    async def describe_person(self, request: Request) -> Response:
        name, person_id = request.path_params["name"], request.path_params["person_id"]
        return JSONResponse(person_json(await self.service.persons.get_person(name, person_id)))

    async def delete_person(self, request: Request) -> Response:
        query = request.query_params
        await self.service.persons.delete_person(
            request.path_params["name"],
            request.path_params["person_id"],
            delete_faces=parse_boolean("delete_faces", query.get("delete_faces", "false")),
            request_token=query.get("request_token"),
        )
        return Response(status_code=204)

    async def associate_faces(self, request: Request) -> Response:
        payload = await self._payload(request)
        result = await self.service.persons.associate_faces(
            request.path_params["name"],
            request.path_params["person_id"],
            payload.text_list("face_ids") or [],
            threshold=payload.number("threshold"),
            request_token=payload.text("request_token"),
        )
        return JSONResponse(association_json(result))

    async def disassociate_faces(self, request: Request) -> Response:
        payload = await self._payload(request)
        result = await self.service.persons.disassociate_faces(
            request.path_params["name"],
            request.path_params["person_id"],
            payload.text_list("face_ids") or [],
            request_token=payload.text("request_token"),
        )
        return JSONResponse(association_json(result))

    async def merge_persons(self, request: Request) -> Response:
        payload = await self._payload(request)
        other = payload.text("other_person_id")
        if not other:
            raise InvalidParameter("other_person_id is required")
        person = await self.service.persons.merge_persons(
            request.path_params["name"], request.path_params["person_id"], other
        )
        return JSONResponse(person_json(person))

    async def search_persons_by_image(self, request: Request) -> Response:
        payload = await self._payload(request, images=1)
        result = await self.service.persons.search_persons_by_image(
            request.path_params["name"],
            payload.image("image"),
            threshold=payload.number("threshold"),
            max_results=payload.integer("max_results"),
        )
        return JSONResponse(person_search_json(result))

    async def search_persons_by_face(self, request: Request) -> Response:
        payload = await self._payload(request)
        result = await self.service.persons.search_persons_by_face(
            request.path_params["name"],
            request.path_params["face_id"],
            threshold=payload.number("threshold"),
            max_results=payload.integer("max_results"),
        )
        return JSONResponse(person_search_json(result))

    # Operations --------------------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        if self.readiness is None:
            return JSONResponse({"status": "ready", "checks": {}})
        try:
            checks = {str(k): bool(v) for k, v in (await self.readiness()).items()}
        except Exception:
            logger.exception("readiness check raised")
            checks = {"readiness_check": False}
        ready = all(checks.values())
        body = {"status": "ready" if ready else "not_ready", "checks": checks}
        return JSONResponse(body, 200 if ready else 503)

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(self.document)

    async def docs(self, request: Request) -> Response:
        return HTMLResponse(self.docs_page)


def build_rest_app(
    service: FaceService,
    readiness: Readiness | None = None,
    *,
    max_image_bytes: int = ImageLimits.max_bytes,
    rekognition: RekognitionConfig | None = None,
) -> Starlette:
    """The REST v1 Starlette app over `service`.

    `readiness` answers `/readyz` (e.g. `{"models": True, "database": True}`); without one the
    app is ready as soon as it serves. `max_image_bytes` (FACESERVE_MAX_IMAGE_BYTES) sizes the
    request-body cap; the image itself is checked again by the service's pipeline.
    """
    metrics = ApiMetrics()
    h = RestHandlers(service, max_image_bytes, metrics, readiness)
    collection = "/v1/collections/{name}"
    persons = collection + "/persons"
    person = persons + "/{person_id}"
    routes = [
        Route("/v1/detect", h.detect, methods=["POST"]),
        Route("/v1/compare", h.compare, methods=["POST"]),
        Route("/v1/collections", h.create_collection, methods=["POST"]),
        Route("/v1/collections", h.list_collections, methods=["GET"]),
        Route(collection, h.describe_collection, methods=["GET"]),
        Route(collection, h.delete_collection, methods=["DELETE"]),
        Route(collection + "/faces", h.index_faces, methods=["POST"]),
        Route(collection + "/faces", h.list_faces, methods=["GET"]),
        Route(collection + "/faces/{face_id}", h.delete_face, methods=["DELETE"]),
        Route(collection + "/search", h.search_by_image, methods=["POST"]),
        Route(collection + "/faces/{face_id}/search", h.search_by_face_id, methods=["POST"]),
        Route(persons, h.create_person, methods=["POST"]),
        Route(persons, h.list_persons, methods=["GET"]),
        Route(persons + "/search", h.search_persons_by_image, methods=["POST"]),
        Route(person, h.describe_person, methods=["GET"]),
        Route(person, h.delete_person, methods=["DELETE"]),
        Route(person + "/faces", h.associate_faces, methods=["POST"]),
        Route(person + "/faces", h.disassociate_faces, methods=["DELETE"]),
        Route(person + "/merge", h.merge_persons, methods=["POST"]),
        Route(
            collection + "/faces/{face_id}/persons/search",
            h.search_persons_by_face,
            methods=["POST"],
        ),
        Route("/healthz", h.healthz, methods=["GET"]),
        Route("/readyz", h.readyz, methods=["GET"]),
        Route("/metrics", metrics.exposition, methods=["GET"]),
        Route("/openapi.json", h.openapi, methods=["GET"]),
        Route("/docs", h.docs, methods=["GET"]),
    ]
    if rekognition is not None:  # the Rekognition-compatible API at POST /
        routes.append(rekognition_route(service, rekognition))
    return Starlette(
        routes=routes,
        middleware=[Middleware(RequestMetricsMiddleware, metrics=metrics, routes=routes)],
        exception_handlers={
            FaceserveError: _service_error,
            HTTPException: _http_error,
            Exception: _internal_error,
        },
    )
