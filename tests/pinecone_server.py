"""A Pinecone stand-in for tests: real HTTP on 127.0.0.1, Pinecone's REST wire protocol.

Pinecone is a cloud service that cannot run here, so the tests drive the real `pinecone`
SDK against this server instead. It speaks the 2026-07 API the SDK (10.x) sends:

- **Control plane** on one port: `GET/POST /indexes`, `GET/DELETE /indexes/{name}`, with
  Pinecone's error bodies (`{"error": {"code", "message"}, "status"}`): 401 for a wrong
  `Api-Key`, 404 for an unknown index, 409 for a name taken, 400 for a bad name, dimension,
  metric or deployment.
- **Data plane** like Pinecone Local: each index listens on its own port, and its `host`
  is that bare `127.0.0.1:PORT` (no scheme, as Pinecone reports hosts). Routes:
  `POST /vectors/upsert`, `POST /query`, `GET /vectors/fetch`, `POST /vectors/delete`,
  `POST /describe_index_stats`, `GET /vectors/list`, with namespaces, dimension checks,
  exact scores (cosine similarity, dot product, or squared euclidean distance, as Pinecone
  reports them per metric) and the gRPC-gateway error bodies the data plane answers with.

Filters are not implemented (faceserve sends none): a request carrying one is refused with
400 rather than silently answered unfiltered.

Tests reach into the state (`vectors`, `drop_index`) to play a world that changed behind
the service's back, and `refuse_data_plane` makes the data plane answer 503 (with
`Retry-After: 0`, so the SDK's retries do not slow the tests down).
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import re
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

_INDEX_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,43}[a-z0-9])?")
_METRICS = ("cosine", "euclidean", "dotproduct")
_CLOUDS = ("aws", "gcp", "azure")
MAX_DIMENSION = 20_000
MAX_UPSERT = 1_000  # vectors per upsert request
MAX_DELETE = 1_000  # ids per delete request
MAX_FETCH = 1_000
MAX_TOP_K = 10_000
MAX_LIST = 100
MAX_ID = 512
# gRPC status codes the data plane reports in its error bodies.
_GRPC_CODE = {400: 3, 401: 16, 403: 7, 404: 5, 409: 6, 429: 8, 503: 14}
_HTTP_CODE = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    503: "UNAVAILABLE",
}


class _Refused(Exception):
    """An HTTP error answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Record:
    values: list[float]
    metadata: dict[str, Any] | None = None


@dataclass
class IndexState:
    """One serverless index: its description and its namespaces of records."""

    name: str
    dimension: int
    metric: str
    cloud: str
    region: str
    deletion_protection: str = "disabled"
    tags: dict[str, str] | None = None
    namespaces: dict[str, dict[str, Record]] = field(default_factory=dict)
    upsert_batches: list[int] = field(default_factory=list)  # vectors per upsert request
    ready: bool = False  # the create answer says Initializing; a describe, Ready
    server: ThreadingHTTPServer | None = None

    @property
    def host(self) -> str:
        assert self.server is not None
        return f"127.0.0.1:{self.server.server_address[1]}"

    def model(self) -> dict[str, Any]:
        ready = self.ready
        return {
            "name": self.name,
            "host": self.host,
            "private_host": None,
            "status": {"ready": ready, "state": "Ready" if ready else "Initializing"},
            "schema": {
                "fields": {
                    "_values": {
                        "type": "dense_vector",
                        "dimension": self.dimension,
                        "metric": self.metric,
                        "description": None,
                    }
                }
            },
            "deployment": {
                "deployment_type": "managed",
                "cloud": self.cloud,
                "region": self.region,
                "environment": "local-test",
            },
            "deletion_protection": self.deletion_protection,
            "read_capacity": {"mode": "OnDemand", "status": {"state": "Ready"}},
            "tags": self.tags,
            "source_collection": None,
            "source_backup_id": None,
            "cmek_id": None,
        }


class PineconeServer:
    """Pinecone's control and data planes for one project with one API key."""

    def __init__(self, api_key: str = "test-pinecone-key") -> None:
        self.api_key = api_key
        self.indexes: dict[str, IndexState] = {}
        self.lock = threading.RLock()
        self._refusals = 0  # data-plane requests still to answer with 503
        self._control = _Server(("127.0.0.1", 0), _ControlHandler, self, None)
        self._dropped: list[_Server] = []  # data planes of deleted indexes, closed at stop

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The control-plane URL, e.g. for `Pinecone(host=...)`."""
        return f"http://127.0.0.1:{self._control.server_address[1]}"

    def start(self) -> PineconeServer:
        self._serve(self._control)
        return self

    def stop(self) -> None:
        with self.lock:
            servers = [state.server for state in self.indexes.values() if state.server]
            self.indexes.clear()
        for server in [*servers, *self._dropped, self._control]:
            server.shutdown()
            server.server_close()
            server.close_connections()

    def __enter__(self) -> PineconeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what tests use to change the world behind the client's back -----------------------

    def vectors(self, index_name: str, namespace: str = "") -> dict[str, Record]:
        """A copy of the records of one namespace of an index (KeyError: no such index)."""
        with self.lock:
            records = self.indexes[index_name].namespaces.get(namespace, {})
            return {vid: Record(list(r.values), r.metadata) for vid, r in records.items()}

    def put_vector(
        self, index_name: str, vector_id: str, values: list[float], namespace: str = ""
    ) -> None:
        """Write a record directly, as something other than faceserve would."""
        with self.lock:
            namespaces = self.indexes[index_name].namespaces
            namespaces.setdefault(namespace, {})[vector_id] = Record(list(values))

    def drop_index(self, index_name: str) -> None:
        """Delete an index as someone with the console would."""
        with self.lock:
            self._close(self.indexes.pop(index_name))

    @contextmanager
    def refuse_data_plane(self, count: int = 1_000_000) -> Iterator[None]:
        """Answer the next `count` data-plane requests (all, by default) with 503."""
        with self.lock:
            self._refusals = count
        try:
            yield
        finally:
            with self.lock:
                self._refusals = 0

    # -- internals ------------------------------------------------------------------------

    def _serve(self, server: ThreadingHTTPServer) -> None:
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def _close(self, state: IndexState) -> None:
        # A deleted index's port keeps answering 404 on connections already open (as a stale
        # host would), and closes when the server stops.
        if state.server is not None:
            self._dropped.append(state.server)

    def take_refusal(self) -> bool:
        with self.lock:
            if self._refusals > 0:
                self._refusals -= 1
                return True
            return False

    def create_index(self, body: dict[str, Any]) -> IndexState:
        name = body.get("name")
        if not isinstance(name, str) or not _INDEX_NAME.fullmatch(name):
            raise _Refused(
                400,
                "Name must consist of lower case alphanumeric characters or '-', "
                "and at most 45 characters",
            )
        fields = (body.get("schema") or {}).get("fields")
        if not isinstance(fields, dict) or set(fields) != {"_values"}:
            raise _Refused(400, "schema.fields must declare exactly one field, '_values'")
        dense = fields["_values"]
        if not isinstance(dense, dict) or dense.get("type") != "dense_vector":
            raise _Refused(400, "field '_values' must be of type dense_vector")
        dimension = dense.get("dimension")
        if isinstance(dimension, bool) or not isinstance(dimension, int):
            raise _Refused(400, "dimension must be an integer")
        if not 1 <= dimension <= MAX_DIMENSION:
            raise _Refused(400, f"Dimension must be between 1 and {MAX_DIMENSION}")
        metric = dense.get("metric", "cosine")
        if metric not in _METRICS:
            raise _Refused(400, f"metric must be one of {', '.join(_METRICS)}")
        deployment = body.get("deployment") or {}
        if deployment.get("deployment_type") != "managed":
            raise _Refused(400, "only managed (serverless) deployments are supported")
        cloud, region = deployment.get("cloud"), deployment.get("region")
        if cloud not in _CLOUDS:
            raise _Refused(400, f"cloud must be one of {', '.join(_CLOUDS)}")
        if not isinstance(region, str) or not region:
            raise _Refused(400, "region is required")
        state = IndexState(
            name,
            dimension,
            metric,
            cloud,
            region,
            deletion_protection=body.get("deletion_protection", "disabled"),
            tags=body.get("tags"),
        )
        with self.lock:
            if name in self.indexes:
                raise _Refused(409, f"Resource {name} already exists")
            state.server = _Server(("127.0.0.1", 0), _DataHandler, self, state)
            self.indexes[name] = state
            self._serve(state.server)
        return state


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        pinecone: PineconeServer,
        index: IndexState | None,
    ) -> None:
        super().__init__(address, handler)
        self.pinecone = pinecone
        self.index = index
        self.open_connections: set[socket.socket] = set()

    def process_request(self, request: Any, client_address: Any) -> None:
        self.open_connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        self.open_connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client hanging up (the SDK drops a connection after a 503) is not an error here.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def close_connections(self) -> None:
        """Hang up on the clients' kept-alive connections (their threads then end)."""
        for connection in list(self.open_connections):
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's pooled httpx client expects
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # quiet: pytest shows failures, not access logs

    def do_GET(self) -> None:  # noqa: N802
        self._answer("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._answer("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._answer("DELETE")

    def do_PATCH(self) -> None:  # noqa: N802
        self._answer("PATCH")

    def _answer(self, method: str) -> None:
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            if self.headers.get("Api-Key") != self.server.pinecone.api_key:
                raise _Refused(401, "Invalid API Key")
            body: Any = json.loads(raw) if raw else {}
            if not isinstance(body, dict):
                raise _Refused(400, "request body must be a JSON object")
            status, answer = self.route(method, split.path, parse_qs(split.query), body)
        except _Refused as refused:
            self._send(refused.status, self.error_body(refused), refused.status == 503)
        except (ValueError, TypeError, KeyError) as exc:
            self._send(400, self.error_body(_Refused(400, f"malformed request: {exc}")))
        else:
            self._send(status, answer)

    def _send(self, status: int, body: Any, retry_now: bool = False) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if data:
            self.send_header("Content-Type", "application/json")
        if retry_now:
            self.send_header("Retry-After", "0")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def route(
        self, method: str, path: str, query: dict[str, list[str]], body: dict[str, Any]
    ) -> tuple[int, Any]:
        raise NotImplementedError

    def error_body(self, refused: _Refused) -> dict[str, Any]:
        raise NotImplementedError


class _ControlHandler(_Handler):
    def error_body(self, refused: _Refused) -> dict[str, Any]:
        code = _HTTP_CODE.get(refused.status, "UNKNOWN")
        return {"error": {"code": code, "message": refused.message}, "status": refused.status}

    def route(
        self, method: str, path: str, query: dict[str, list[str]], body: dict[str, Any]
    ) -> tuple[int, Any]:
        pinecone = self.server.pinecone
        if path == "/indexes" and method == "GET":
            with pinecone.lock:
                return 200, {"indexes": [s.model() for s in pinecone.indexes.values()]}
        if path == "/indexes" and method == "POST":
            state = pinecone.create_index(body)
            with pinecone.lock:
                model = state.model()
                state.ready = True
                return 201, model
        match = re.fullmatch(r"/indexes/([^/]+)", path)
        if match is None:
            raise _Refused(404, f"no route for {method} {path}")
        name = unquote(match.group(1))
        with pinecone.lock:
            state = pinecone.indexes.get(name)
            if state is None:
                raise _Refused(404, f"Resource {name} not found")
            if method == "GET":
                return 200, state.model()
            if method == "DELETE":
                if state.deletion_protection == "enabled":
                    raise _Refused(403, f"Deletion protection is enabled for index {name}")
                pinecone.drop_index(name)
                return 202, None
        raise _Refused(404, f"no route for {method} {path}")


class _DataHandler(_Handler):
    def error_body(self, refused: _Refused) -> dict[str, Any]:
        return {
            "code": _GRPC_CODE.get(refused.status, 2),
            "message": refused.message,
            "details": [],
        }

    def route(
        self, method: str, path: str, query: dict[str, list[str]], body: dict[str, Any]
    ) -> tuple[int, Any]:
        pinecone = self.server.pinecone
        if pinecone.take_refusal():
            raise _Refused(503, "the data plane is unavailable (injected by the test)")
        with pinecone.lock:
            state = self.server.index
            assert state is not None
            if pinecone.indexes.get(state.name) is not state:
                # A pooled connection that outlived the index it was opened to.
                raise _Refused(404, "Not Found")
            if "filter" in body:
                raise _Refused(400, "filters are not supported by this test server")
            routes = {
                ("POST", "/vectors/upsert"): _upsert,
                ("POST", "/query"): _query,
                ("GET", "/vectors/fetch"): _fetch,
                ("POST", "/vectors/delete"): _delete,
                ("POST", "/describe_index_stats"): _stats,
                ("GET", "/vectors/list"): _list,
            }
            handler = routes.get((method, path))
            if handler is None:
                raise _Refused(404, f"no route for {method} {path}")
            return 200, handler(state, query, body)


# -- data-plane operations (called with the server's lock held) -----------------------------


def _namespace(value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _Refused(400, "namespace must be a string")
    return value


def _vector_id(value: object) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_ID:
        raise _Refused(400, f"vector id must be a string of 1 to {MAX_ID} characters")
    return value


def _values(state: IndexState, value: object) -> list[float]:
    if not isinstance(value, list) or not all(
        isinstance(x, int | float) and not isinstance(x, bool) for x in value
    ):
        raise _Refused(400, "values must be a list of numbers")
    if len(value) != state.dimension:
        raise _Refused(
            400,
            f"Vector dimension {len(value)} does not match the dimension of the index "
            f"{state.dimension}",
        )
    floats = [float(x) for x in value]
    if not all(math.isfinite(x) for x in floats):
        raise _Refused(400, "values must be finite")
    return floats


def _metadata(value: object) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _Refused(400, "metadata must be an object")
    for key, item in value.items():
        plain = isinstance(item, str | bool | int | float)
        strings = isinstance(item, list) and all(isinstance(s, str) for s in item)
        if not (plain or strings):
            # Pinecone's own rule: no nulls, no nested objects, lists only of strings.
            raise _Refused(
                400,
                f"Metadata value for key {key!r} must be a string, number, boolean or list "
                "of strings",
            )
    return dict(value)


def _upsert(state: IndexState, query: dict[str, list[str]], body: dict[str, Any]) -> Any:
    vectors = body.get("vectors")
    if not isinstance(vectors, list) or not vectors:
        raise _Refused(400, "vectors must be a non-empty list")
    if len(vectors) > MAX_UPSERT:
        raise _Refused(400, f"at most {MAX_UPSERT} vectors per upsert, got {len(vectors)}")
    if any("sparseValues" in v for v in vectors):
        raise _Refused(400, "sparse values are not supported by a dense index")
    # Validate everything first: a refused request writes nothing.
    records = {
        _vector_id(v.get("id")): Record(
            _values(state, v.get("values")), _metadata(v.get("metadata"))
        )
        for v in vectors
    }
    state.namespaces.setdefault(_namespace(body.get("namespace")), {}).update(records)
    state.upsert_batches.append(len(vectors))
    return {"upsertedCount": len(vectors)}


def _score(metric: str, a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    if metric == "dotproduct":
        return dot
    if metric == "euclidean":
        return sum((x - y) ** 2 for x, y in zip(a, b, strict=True))
    norms = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norms if norms else 0.0


def _query(state: IndexState, query: dict[str, list[str]], body: dict[str, Any]) -> Any:
    top_k = body.get("topK")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
        raise _Refused(400, f"topK must be an integer from 1 to {MAX_TOP_K}")
    namespace = _namespace(body.get("namespace"))
    records = state.namespaces.get(namespace, {})
    if ("vector" in body) == ("id" in body):
        raise _Refused(400, "exactly one of vector and id is required")
    if "id" in body:
        found = records.get(_vector_id(body["id"]))
        if found is None:
            return {"matches": [], "namespace": namespace, "usage": {"readUnits": 1}}
        vector = found.values
    else:
        vector = _values(state, body["vector"])
    scored = [(vid, _score(state.metric, vector, r.values), r) for vid, r in records.items()]
    # Euclidean reports a distance (smaller is closer); the others a similarity. Ties by id.
    if state.metric == "euclidean":
        scored.sort(key=lambda item: (item[1], item[0]))
    else:
        scored.sort(key=lambda item: (-item[1], item[0]))
    matches = []
    for vid, score, record in scored[:top_k]:
        match: dict[str, Any] = {"id": vid, "score": score, "values": []}
        if body.get("includeValues"):
            match["values"] = list(record.values)
        if body.get("includeMetadata") and record.metadata is not None:
            match["metadata"] = dict(record.metadata)
        matches.append(match)
    units = max(1, len(records) // 1000)
    return {"matches": matches, "namespace": namespace, "usage": {"readUnits": units}}


def _fetch(state: IndexState, query: dict[str, list[str]], body: dict[str, Any]) -> Any:
    ids = query.get("ids", [])
    if not ids:
        raise _Refused(400, "ids are required")
    if len(ids) > MAX_FETCH:
        raise _Refused(400, f"at most {MAX_FETCH} ids per fetch")
    namespace = _namespace((query.get("namespace") or [""])[0])
    records = state.namespaces.get(namespace, {})
    vectors = {}
    for vid in ids:
        record = records.get(vid)
        if record is not None:
            entry: dict[str, Any] = {"id": vid, "values": list(record.values)}
            if record.metadata is not None:
                entry["metadata"] = dict(record.metadata)
            vectors[vid] = entry
    return {"vectors": vectors, "namespace": namespace, "usage": {"readUnits": 1}}


def _delete(state: IndexState, query: dict[str, list[str]], body: dict[str, Any]) -> Any:
    namespace = _namespace(body.get("namespace"))
    ids, everything = body.get("ids"), body.get("deleteAll", False)
    if (ids is not None) == bool(everything):
        raise _Refused(400, "exactly one of ids and deleteAll is required")
    if everything:
        state.namespaces.pop(namespace, None)
        return {}
    if not isinstance(ids, list) or not ids or len(ids) > MAX_DELETE:
        raise _Refused(400, f"ids must be a list of 1 to {MAX_DELETE} ids")
    records = state.namespaces.get(namespace, {})
    for vid in ids:
        records.pop(_vector_id(vid), None)  # unknown ids are not an error
    if namespace in state.namespaces and not records:
        del state.namespaces[namespace]  # an emptied serverless namespace disappears
    return {}


def _stats(state: IndexState, query: dict[str, list[str]], body: dict[str, Any]) -> Any:
    counts = {ns: len(records) for ns, records in state.namespaces.items() if records}
    return {
        "namespaces": {ns: {"vectorCount": n} for ns, n in counts.items()},
        "dimension": state.dimension,
        "indexFullness": 0.0,
        "totalVectorCount": sum(counts.values()),
        "metric": state.metric,
        "vectorType": "dense",
    }


def _list(state: IndexState, query: dict[str, list[str]], body: dict[str, Any]) -> Any:
    namespace = _namespace((query.get("namespace") or [""])[0])
    prefix = (query.get("prefix") or [""])[0]
    limit = int((query.get("limit") or [str(MAX_LIST)])[0])
    if not 1 <= limit <= MAX_LIST:
        raise _Refused(400, f"limit must be from 1 to {MAX_LIST}")
    token = (query.get("paginationToken") or [None])[0]
    after = _decode_token(token) if token else None
    ids = sorted(vid for vid in state.namespaces.get(namespace, {}) if vid.startswith(prefix))
    if after is not None:
        ids = [vid for vid in ids if vid > after]
    page = ids[:limit]
    answer: dict[str, Any] = {
        "vectors": [{"id": vid} for vid in page],
        "namespace": namespace,
        "usage": {"readUnits": 1},
    }
    if len(ids) > limit:
        answer["pagination"] = {"next": _encode_token(page[-1])}
    return answer


def _encode_token(last_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": last_id}).encode()).decode()


def _decode_token(token: str) -> str:
    try:
        after = json.loads(base64.urlsafe_b64decode(token.encode()))["after"]
    except (ValueError, KeyError, TypeError):
        raise _Refused(400, "invalid pagination token") from None
    if not isinstance(after, str):
        raise _Refused(400, "invalid pagination token")
    return after
