"""Before the load: a seeded collection. After it: every acknowledged face still there."""

from __future__ import annotations

import contextlib
import random
import time
from dataclasses import dataclass, field

import httpx

from serve_app.loadtest.photos import Payload, PayloadSet
from serve_app.loadtest.traffic import AckLog, Acknowledged, RunManifest, multipart

LIST_PAGE = 1000
SEARCHED_SAMPLE = 10


class SeedError(RuntimeError):
    """The service could not be prepared for the load (not ready, or refusing the seed)."""


def wait_ready(client: httpx.Client, timeout_s: float = 120.0) -> None:
    """Wait until GET /readyz answers 200."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            response = client.get("/readyz", timeout=10)
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text[:200]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.5)
    raise SeedError(f"{client.base_url} is not ready after {timeout_s:.0f} s: {last}")


def seed_collection(
    client: httpx.Client, collection: str, payloads: PayloadSet, ack_log: AckLog
) -> RunManifest:
    """Create `collection`, index every seed photo, and keep as search queries the query
    photos whose face the collection finds. Every request path is warmed on the way."""
    response = client.post("/v1/collections", json={"name": collection})
    if response.status_code != 201:
        raise SeedError(f"creating collection {collection!r}: {_describe(response)}")
    face_ids: dict[str, list[str]] = {}
    for payload in payloads.of(role="seed"):
        body, headers = multipart(
            {"external_image_id": payload.source[:200]},
            {"image": (payload.file, payloads.read(payload))},
        )
        response = client.post(f"/v1/collections/{collection}/faces", content=body, headers=headers)
        if response.status_code != 200:
            raise SeedError(f"indexing {payload.name}: {_describe(response)}")
        ids = [face["face_id"] for face in response.json()["indexed"]]
        ack_log.indexed(collection, ids, payload.name)
        face_ids[payload.source] = ids
    queries: list[str] = []
    for payload in payloads.of(kind="face", role="query"):
        if not face_ids.get(payload.source):
            continue
        if _finds(client, collection, payloads, payload, set(face_ids[payload.source])):
            queries.append(payload.name)
    if not queries:
        raise SeedError(
            "no query photo found its face in the seeded collection: the service cannot search"
        )
    _warm_stateless(client, payloads, payloads.of(kind="face", role="query")[0])
    return RunManifest(collection, payloads, queries)


def _finds(
    client: httpx.Client,
    collection: str,
    payloads: PayloadSet,
    query: Payload,
    expected: set[str],
) -> bool:
    body, headers = multipart({}, {"image": (query.file, payloads.read(query))})
    response = client.post(f"/v1/collections/{collection}/search", content=body, headers=headers)
    if response.status_code != 200:
        return False  # e.g. no face detected at this size: not a query we can use
    matches = response.json()["matches"]
    return bool(matches) and matches[0]["face"]["face_id"] in expected


def _warm_stateless(client: httpx.Client, payloads: PayloadSet, face: Payload) -> None:
    data = payloads.read(face)
    body, headers = multipart({}, {"image": (face.file, data)})
    client.post("/v1/detect", content=body, headers=headers)
    body, headers = multipart({}, {"source": (face.file, data), "target": (face.file, data)})
    client.post("/v1/compare", content=body, headers=headers)


@dataclass
class Verification:
    """Acknowledged faces looked up after the load."""

    acknowledged: int
    deleted_by_users: int
    missing: list[str] = field(default_factory=list)
    searched: int = 0
    search_failures: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        """Faces acknowledged as indexed that the service no longer has (or cannot search)."""
        return len(self.missing) + len(self.search_failures)


def verify_acknowledged(
    client: httpx.Client, acknowledged: Acknowledged, seed: int = 0
) -> Verification:
    """List every collection's faces and check each acknowledged one is there; search by face
    id with a sample of them (their vectors must be searchable too)."""
    result = Verification(acknowledged.count, acknowledged.deleted)
    present_in: dict[str, set[str]] = {}
    for collection, expected in sorted(acknowledged.faces.items()):
        present = _all_face_ids(client, collection)
        present_in[collection] = present
        result.missing += sorted(f"{collection}/{face_id}" for face_id in expected - present)
    sample = [
        (collection, face_id)
        for collection, ids in sorted(acknowledged.faces.items())
        for face_id in sorted(ids & present_in[collection])
    ]
    random.Random(seed).shuffle(sample)
    for collection, face_id in sample[:SEARCHED_SAMPLE]:
        response = client.post(f"/v1/collections/{collection}/faces/{face_id}/search", json={})
        result.searched += 1
        if response.status_code != 200:
            result.search_failures.append(f"{collection}/{face_id}: {_describe(response)}")
    return result


def _all_face_ids(client: httpx.Client, collection: str) -> set[str]:
    ids: set[str] = set()
    cursor: str | None = None
    while True:
        params = {"limit": str(LIST_PAGE)} | ({"cursor": cursor} if cursor else {})
        response = client.get(f"/v1/collections/{collection}/faces", params=params)
        if response.status_code == 404:
            return ids
        if response.status_code != 200:
            raise SeedError(f"listing faces of {collection!r}: {_describe(response)}")
        body = response.json()
        ids.update(face["face_id"] for face in body["faces"])
        cursor = body.get("next_cursor")
        if not cursor:
            return ids


def delete_collection(client: httpx.Client, collection: str) -> None:
    """Remove a load test's collection (best effort)."""
    with contextlib.suppress(httpx.HTTPError):
        client.delete(f"/v1/collections/{collection}")


def _describe(response: httpx.Response) -> str:
    return f"HTTP {response.status_code} {response.text[:300]}"
