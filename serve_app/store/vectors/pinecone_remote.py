"""Pinecone through its official SDK (REST): one serverless index per collection.

Only this module imports `pinecone`. It knows the calls faceserve makes and turns every
Pinecone failure into one of our errors with a message a client may see (never the API key,
never a stack trace); `PineconeIndex` decides what the failures mean for the data.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pinecone import Pinecone, RetryConfig, ServerlessSpec
from pinecone.errors.exceptions import (
    ApiError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    PaymentRequiredError,
    PineconeConnectionError,
    PineconeError,
    PineconeTimeoutError,
    PineconeValueError,
    RateLimitError,
    UnauthorizedError,
)
from pinecone.index import Index

from serve_app.errors import FaceserveError, InvalidParameter, VectorStoreUnavailable

log = logging.getLogger(__name__)
# The SDK logs every call at INFO (a line per search); its warnings and errors still show.
logging.getLogger("pinecone").setLevel(logging.WARNING)

T = TypeVar("T")

MAX_INDEX_NAME = 45  # Pinecone's limit on index names
UPSERT_BATCH = 100  # vectors per upsert request (Pinecone takes up to 1000 or 2 MB)
DELETE_BATCH = 1000  # ids per delete request (Pinecone's maximum)
FETCH_BATCH = 100
LIST_PAGE = 100  # Pinecone's largest page of ids
MAX_TOP_K = 10_000  # Pinecone's largest top_k
CREATE_TIMEOUT_S = 300  # how long creating an index may take to become ready
CLOUDS = ("aws", "gcp", "azure")
_PREFIX = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
_REGION = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")


@dataclass(frozen=True)
class IndexFacts:
    """What describing an index told us."""

    name: str
    dimension: int | None
    metric: str | None
    ready: bool
    state: str


@dataclass(frozen=True)
class Match:
    id: str
    score: float


class IndexMissing(VectorStoreUnavailable):
    """The collection's Pinecone index does not exist (deleted behind our back)."""


def check_prefix(prefix: str) -> str:
    """An index-name prefix that leaves room for `-<32 hex>` within Pinecone's 45."""
    longest = MAX_INDEX_NAME - 33
    if not isinstance(prefix, str) or len(prefix) > longest or not _PREFIX.fullmatch(prefix):
        raise InvalidParameter(
            f"Pinecone index prefix {prefix!r} must be 1-{longest} lowercase letters, digits "
            "and '-', not starting or ending with '-'"
        )
    return prefix


def check_location(cloud: object, region: object) -> tuple[str, str]:
    """A serverless index's cloud and region, checked (the region loosely: Pinecone has the
    final word, and refuses one it does not serve)."""
    if cloud not in CLOUDS:
        raise InvalidParameter(f"Pinecone cloud must be one of {', '.join(CLOUDS)}, got {cloud!r}")
    if not isinstance(region, str) or not _REGION.fullmatch(region):
        raise InvalidParameter(
            f"Pinecone region must be 1-64 lowercase letters, digits and '-', got {region!r}"
        )
    return str(cloud), region


class PineconeRemote:
    """The Pinecone project faceserve's indexes live in (one API key, one control plane)."""

    def __init__(self, api_key: str, host: str = "", timeout_s: float = 10.0) -> None:
        if not api_key:
            raise InvalidParameter("the Pinecone backend needs an API key")
        try:
            self.client = Pinecone(
                api_key=api_key,
                host=host or None,
                timeout=timeout_s,
                source_tag="faceserve",
                retry_config=RetryConfig(max_retries=2),
            )
        except PineconeError as exc:
            # The SDK's message names the problem (e.g. a key with a newline), not the key.
            raise InvalidParameter(f"Pinecone client configuration: {exc.message}") from None
        # Pinecone Local (and this project's test server) serves the data plane over plain
        # http like its control plane, but reports hosts without a scheme, which the SDK
        # reads as https: follow the control plane's scheme instead.
        self._plain_http = (host or "").startswith("http://")
        self._lock = threading.Lock()
        self._data: dict[str, Index] = {}  # index name -> data-plane client

    def close(self) -> None:
        with self._lock:
            clients, self._data = list(self._data.values()), {}
        for client in clients:
            client.close()
        self.client.close()

    # -- control plane --------------------------------------------------------------------

    def describe(self, name: str) -> IndexFacts | None:
        """The index's facts, or None if it does not exist."""
        try:
            model = self._call(
                f"describe Pinecone index {name}", self.client.indexes.describe, name
            )
        except IndexMissing:
            return None
        return _facts(model)

    def create(self, name: str, dimension: int, cloud: str, region: str) -> IndexFacts:
        """Create a serverless cosine index and wait until it is ready. An index of that name
        that already exists is taken over if its dimension and metric fit (a retried create)."""
        what = f"create Pinecone index {name}"
        # A recreated index has a new data-plane host: never reuse the old one's client.
        self._forget(name)
        try:
            model = self._call(
                what,
                self.client.indexes.create,
                name=name,
                dimension=dimension,
                metric="cosine",
                spec=ServerlessSpec(cloud=cloud, region=region),
                deletion_protection="disabled",
                timeout=CREATE_TIMEOUT_S,
            )
        except _Exists:
            facts = self.describe(name)
            if facts is None:
                raise VectorStoreUnavailable(f"could not {what}: it exists and vanished") from None
            if (facts.dimension, facts.metric) != (dimension, "cosine"):
                raise InvalidParameter(
                    f"Pinecone index {name} already exists with dimension {facts.dimension} and "
                    f"metric {facts.metric}; faceserve needs {dimension} and cosine"
                ) from None
            return facts
        return _facts(model)

    def delete(self, name: str) -> bool:
        """Delete the index (without waiting for it to be torn down); False if there was none."""
        self._forget(name)
        try:
            self._call(
                f"delete Pinecone index {name}", self.client.indexes.delete, name, timeout=-1
            )
        except IndexMissing:
            return False
        return True

    # -- data plane -----------------------------------------------------------------------

    def upsert(
        self, name: str, vectors: Sequence[tuple[str, list[float], Mapping[str, Any]]]
    ) -> None:
        """Write (id, values, metadata) records, in requests of UPSERT_BATCH."""
        for start in range(0, len(vectors), UPSERT_BATCH):
            batch = [
                {"id": vid, "values": values, "metadata": dict(metadata)}
                for vid, values, metadata in vectors[start : start + UPSERT_BATCH]
            ]
            self._data_call(name, "upsert vectors to", lambda i, b=batch: i.upsert(vectors=b))

    def delete_vectors(self, name: str, ids: Sequence[str]) -> None:
        """Delete these ids (unknown ones are fine), in requests of DELETE_BATCH."""
        for start in range(0, len(ids), DELETE_BATCH):
            batch = list(ids[start : start + DELETE_BATCH])
            self._data_call(name, "delete vectors from", lambda i, b=batch: i.delete(ids=b))

    def query(self, name: str, vector: list[float], top_k: int) -> list[Match]:
        """The `top_k` nearest vectors, most similar first (for cosine: score = cosine)."""
        response = self._data_call(
            name,
            "query",
            lambda i: i.query(vector=vector, top_k=min(top_k, MAX_TOP_K), include_metadata=False),
        )
        return [Match(m.id, float(m.score)) for m in response.matches]

    def fetch(self, name: str, ids: Sequence[str]) -> dict[str, list[float]]:
        """The values of the ids the index holds, by id."""
        found: dict[str, list[float]] = {}
        for start in range(0, len(ids), FETCH_BATCH):
            batch = list(ids[start : start + FETCH_BATCH])
            response = self._data_call(
                name, "fetch vectors from", lambda i, b=batch: i.fetch(ids=b)
            )
            found.update({vid: list(v.values) for vid, v in response.vectors.items()})
        return found

    def count(self, name: str) -> int:
        """How many vectors the index holds, by its own statistics (eventually consistent)."""
        stats = self._data_call(name, "describe", lambda i: i.describe_index_stats())
        return int(stats.total_vector_count)

    def list_ids(self, name: str) -> Iterator[list[str]]:
        """Every vector id in the index, a page at a time."""
        token: str | None = None
        while True:
            page = self._data_call(
                name,
                "list vector ids of",
                lambda i, t=token: i.list_paginated(limit=LIST_PAGE, pagination_token=t),
            )
            ids = [item.id for item in page.vectors if item.id]
            if ids:
                yield ids
            token = page.pagination.next if page.pagination is not None else None
            if not token:
                return

    # -- internals ------------------------------------------------------------------------

    def _data_call(self, name: str, what: str, call: Callable[[Index], T]) -> T:
        client = self._index_client(name)
        try:
            return self._call(f"{what} Pinecone index {name}", call, client)
        except FaceserveError:
            # The host may be gone (index deleted, recreated elsewhere): look it up afresh.
            self._forget(name)
            raise

    def _index_client(self, name: str) -> Index:
        with self._lock:
            client = self._data.get(name)
        if client is not None:
            return client
        model = self._call(f"describe Pinecone index {name}", self.client.indexes.describe, name)
        if not model.host:
            raise VectorStoreUnavailable(f"Pinecone index {name} has no host yet (initializing)")
        host = model.host
        if self._plain_http and host.startswith("https://"):
            host = "http://" + host.removeprefix("https://")
        client = self.client.index(host=host)
        with self._lock:
            existing = self._data.setdefault(name, client)
        if existing is not client:
            client.close()
        return existing

    def _forget(self, name: str) -> None:
        with self._lock:
            client = self._data.pop(name, None)
        if client is not None:
            client.close()

    @staticmethod
    def _call(what: str, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return call(*args, **kwargs)
        except PineconeError as exc:
            raise _our_error(what, exc) from None


class _Exists(VectorStoreUnavailable):
    """Creating an index whose name is taken (409)."""


def _facts(model: Any) -> IndexFacts:
    dense = [f for f in model.schema.fields.values() if hasattr(f, "dimension")]
    dimension = int(dense[0].dimension) if len(dense) == 1 else None
    metric = str(dense[0].metric) if len(dense) == 1 else None
    return IndexFacts(model.name, dimension, metric, bool(model.status.ready), model.status.state)


def _our_error(what: str, exc: PineconeError) -> FaceserveError:
    """Pinecone's failure as ours: what we tried, and why it failed, in words."""
    reason = exc.message or type(exc).__name__
    if isinstance(exc, NotFoundError):
        return IndexMissing(f"could not {what}: it does not exist (the repair pass recreates it)")
    if isinstance(exc, ConflictError):
        return _Exists(f"could not {what}: {reason}")
    if isinstance(exc, UnauthorizedError):
        return VectorStoreUnavailable(
            f"could not {what}: Pinecone rejected the API key (check FACESERVE_PINECONE_API_KEY)"
        )
    if isinstance(exc, PaymentRequiredError | RateLimitError):
        return VectorStoreUnavailable(f"could not {what}: Pinecone quota or rate limit: {reason}")
    if isinstance(exc, ForbiddenError):
        return VectorStoreUnavailable(f"could not {what}: Pinecone refused: {reason}")
    if isinstance(exc, PineconeConnectionError | PineconeTimeoutError):
        return VectorStoreUnavailable(f"could not {what}: Pinecone is unreachable: {reason}")
    if isinstance(exc, PineconeValueError):
        return InvalidParameter(f"could not {what}: {reason}")
    if isinstance(exc, ApiError) and exc.status_code in (400, 422):
        return InvalidParameter(f"could not {what}: Pinecone refused the request: {reason}")
    return VectorStoreUnavailable(f"could not {what}: {reason}")
