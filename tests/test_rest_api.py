"""REST API v1 over HTTP, in process: the real dlib-r29 pack and a real embedded PostgreSQL.

Every route, both ways of sending an image (multipart and base64 JSON), every error a client
can provoke, and a fuzz loop that must never get a 500.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import json
import logging
import random
import re
import string
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.routing import APIRoute
from jsonschema import Draft202012Validator
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from serve_app.api import build_rest_app
from serve_app.config import ImageLimits, Settings
from serve_app.service import thresholds
from serve_app.service.access import AccessControl, configured_keys
from serve_app.service.faces import FaceService
from serve_app.service.ports import LocalPipeline, LocalStorage
from serve_app.service.services import Services
from serve_app.store import EmbeddedPostgres, Store
from serve_app.store.security import SecurityStore
from serve_app.vision.packs.dlib_r29 import DlibR29Pack

from .test_image import encode, noisy_jpeg, quadrants, raw_png

with warnings.catch_warnings():
    # Starlette 1.x asks for httpx2; httpx works the same for in-process tests.
    warnings.simplefilter("ignore", UserWarning)
    from starlette.testclient import TestClient

# Enrolment photo(s) and a *different* query photo per person (under people/face_recognition).
PEOPLE = {
    "obama": (["obama/obama.jpg", "obama/obama1.jpg"], "obama/obama2.jpg"),
    "biden": (["biden/biden.jpg"], "biden/biden2.jpg"),
    "kit_harington": (["kit_harington/john1.jpeg"], "kit_harington/john2.jpeg"),
    "alex_lacamoire": (["alex_lacamoire/img1.jpg"], "alex_lacamoire/alex_lacamoire1.jpg"),
    "rose_leslie": (["rose_leslie/img1.jpg"], "rose_leslie/img2.jpg"),
    "lin_manuel_miranda": (["lin_manuel_miranda/lin-manuel-miranda.png"], None),
}


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def database_url(postgres: EmbeddedPostgres) -> str:
    # A database of its own on the shared server: these tests see only their collections.
    return postgres.fresh_database("rest_tests")


@pytest.fixture(scope="module")
def service(database_url: str, pack: DlibR29Pack, settings: Settings) -> Iterator[Services]:
    store = Store.open(database_url)
    pipeline = LocalPipeline(pack, settings.image_limits)
    yield Services.build(LocalStorage(store), {pack.name: pipeline}, pack.name)
    store.close()


# Auth on, as deployed: every request carries the admin key (tests/test_security.py covers
# the other roles, scopes and refusals).
ADMIN_KEY = "rest-tests-admin-" + "k" * 24


@pytest.fixture(scope="module")
def client(service: Services, database_url: str) -> Iterator[TestClient]:
    security = SecurityStore.open(database_url)
    access = AccessControl(
        security,
        configured=configured_keys(ADMIN_KEY, {}),
        rate_limits={"admin": 0, "anonymous": 0},  # unlimited: the fuzz loop is fast
    )
    app = build_rest_app(service, access=access)
    with TestClient(app, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as client:
        yield client
    security.close()


@pytest.fixture(scope="module")
def document(client: TestClient) -> dict[str, Any]:
    r = client.get("/openapi.json")
    assert r.status_code == 200
    return json.loads(r.content)


@pytest.fixture(scope="module")
def people_dir(faces_dir: Path) -> Path:
    return faces_dir / "people" / "face_recognition"


@pytest.fixture(scope="module")
def people(client: TestClient, people_dir: Path) -> dict[str, list[dict]]:
    """A collection with one face per enrolment photo; person -> the index responses."""
    assert client.post("/v1/collections", json={"name": "people"}).status_code == 201
    responses: dict[str, list[dict]] = {}
    for person, (enrolment, _) in PEOPLE.items():
        for n, name in enumerate(enrolment):
            r = post_image(
                client,
                "/v1/collections/people/faces",
                (people_dir / name).read_bytes(),
                external_image_id=f"{person}#{n}",
                max_faces="1",
            )
            assert r.status_code == 200, r.text
            responses.setdefault(person, []).append(r.json())
    return responses


@pytest.fixture(scope="module")
def t1_collection(client: TestClient, t1_bytes: bytes) -> dict:
    """A collection holding the six faces of t1.jpg; the index response."""
    assert client.post("/v1/collections", json={"name": "group"}).status_code == 201
    r = post_image(client, "/v1/collections/group/faces", t1_bytes, external_image_id="t1")
    assert r.status_code == 200, r.text
    return r.json()


# --- helpers ----------------------------------------------------------------------------------


def post_image(
    client: TestClient, url: str, image: bytes, field: str = "image", **fields: Any
) -> Any:
    """POST one image as a multipart file part, other fields as form fields."""
    return client.post(url, files={field: (f"{field}.jpg", image)}, data=fields)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def assert_error(response: Any, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    return body["error"]


def assert_documented(document: dict, path: str, method: str, response: Any) -> None:
    """The response body matches the schema the OpenAPI document gives for it."""
    described = document["paths"][path][method]["responses"][str(response.status_code)]
    schema = described["content"]["application/json"]["schema"]
    validator = Draft202012Validator({**schema, "components": document["components"]})
    validator.validate(response.json())


def astronaut_face(astronaut_bytes: bytes) -> bytes:
    """A small JPEG of the astronaut's face: quick to detect."""
    image = Image.open(io.BytesIO(astronaut_bytes)).crop((130, 0, 310, 220))
    return encode(image.convert("RGB"), "JPEG")


# --- detect -----------------------------------------------------------------------------------


def test_detect_finds_the_six_faces_of_t1(
    client: TestClient, document: dict, t1_bytes: bytes
) -> None:
    r = post_image(client, "/v1/detect", t1_bytes)
    assert r.status_code == 200, r.text
    assert_documented(document, "/v1/detect", "post", r)
    body = r.json()
    assert body["model_version"].startswith("dlib-r29")
    width, height = body["image"]["width"], body["image"]["height"]
    assert (width, height) == Image.open(io.BytesIO(t1_bytes)).size
    assert len(body["faces"]) == 6
    areas = [f["bounding_box"]["width"] * f["bounding_box"]["height"] for f in body["faces"]]
    assert areas == sorted(areas, reverse=True)
    for face in body["faces"]:
        box = face["bounding_box"]
        assert box["left"] >= 0 and box["left"] + box["width"] <= width
        assert box["top"] >= 0 and box["top"] + box["height"] <= height
        assert len(face["landmarks"]) == 5
        for x, y in face["landmarks"]:
            assert box["left"] <= x <= box["left"] + box["width"]
            assert box["top"] <= y <= box["top"] + box["height"]
        assert 50 <= face["confidence"] <= 100
        assert set(face["quality"]) >= {"sharpness", "brightness", "face_size", "pose"}


def test_detect_accepts_base64_json_form_field_and_data_url(
    client: TestClient, astronaut_bytes: bytes
) -> None:
    multipart = post_image(client, "/v1/detect", astronaut_bytes)
    assert multipart.status_code == 200 and len(multipart.json()["faces"]) == 1
    encoded = b64(astronaut_bytes)
    variants = [
        client.post("/v1/detect", json={"image": encoded}),
        client.post("/v1/detect", json={"image": "data:image/png;base64," + encoded}),
        client.post("/v1/detect", data={"image": encoded}),  # url-encoded form, base64 text
    ]
    for r in variants:
        assert r.status_code == 200, r.text
        assert r.json() == multipart.json()


def test_detect_finds_nothing_in_a_picture_without_faces(client: TestClient) -> None:
    r = post_image(client, "/v1/detect", encode(Image.fromarray(quadrants(160, 120)), "PNG"))
    assert r.status_code == 200
    assert r.json()["faces"] == [] and r.json()["image"] == {"width": 160, "height": 120}


# --- collections ------------------------------------------------------------------------------


def test_collection_lifecycle(client: TestClient, document: dict) -> None:
    r = client.post("/v1/collections", json={"name": "lifecycle", "metadata": {"team": "a"}})
    assert r.status_code == 201, r.text
    assert_documented(document, "/v1/collections", "post", r)
    created = r.json()
    assert created["name"] == "lifecycle" and created["metadata"] == {"team": "a"}
    assert created["model_version"].startswith("dlib-r29") and created["embedding_dim"] == 128
    assert created["vector_backend"] == "pgvector" and created["face_count"] == 0
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d", created["created_at"])

    err = assert_error(
        client.post("/v1/collections", json={"name": "lifecycle"}), 409, "already_exists"
    )
    assert "lifecycle" in err["message"]

    listed = client.get("/v1/collections")
    assert listed.status_code == 200
    assert_documented(document, "/v1/collections", "get", listed)
    assert "lifecycle" in [c["name"] for c in listed.json()["collections"]]

    described = client.get("/v1/collections/lifecycle")
    assert described.status_code == 200 and described.json() == created

    assert client.delete("/v1/collections/lifecycle").status_code == 204
    assert_error(client.get("/v1/collections/lifecycle"), 404, "not_found")
    assert_error(client.delete("/v1/collections/lifecycle"), 404, "not_found")
    assert "lifecycle" not in [
        c["name"] for c in client.get("/v1/collections").json()["collections"]
    ]


def test_collection_created_from_a_form(client: TestClient) -> None:
    r = client.post("/v1/collections", data={"name": "from_form", "metadata": '{"k": [1, 2]}'})
    assert r.status_code == 201, r.text
    assert r.json()["metadata"] == {"k": [1, 2]}
    assert client.delete("/v1/collections/from_form").status_code == 204


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({}, 400, "invalid_parameter"),
        ({"name": ""}, 400, "invalid_parameter"),
        ({"name": 42}, 400, "invalid_parameter"),
        ({"name": "../../etc/passwd"}, 400, "invalid_parameter"),
        ({"name": "x" * 300}, 400, "invalid_parameter"),
        ({"name": "a b; DROP TABLE faces"}, 400, "invalid_parameter"),
        ({"name": "ok_name", "metadata": [1, 2]}, 400, "invalid_parameter"),
        ({"name": "ok_name", "metadata": "text"}, 400, "invalid_parameter"),
        ({"name": "ok_name", "model_pack": "no-such-pack"}, 400, "invalid_parameter"),
        ({"name": "ok_name", "model_pack": "buffalo_l"}, 422, "model_not_available"),
        ({"name": "ok_name", "vector_backend": "pinecone"}, 400, "invalid_parameter"),
        ({"name": "ok_name", "vector_backend": "faiss"}, 400, "invalid_parameter"),
        ({"name": "ok_name", "vector_backend": 7}, 400, "invalid_parameter"),
        ({"name": "ok_name", "vector_options": {"cloud": "aws"}}, 400, "invalid_parameter"),
        ({"name": "ok_name", "vector_options": "aws"}, 400, "invalid_parameter"),
    ],
)
def test_bad_collection_requests(client: TestClient, body: dict, status: int, code: str) -> None:
    assert_error(client.post("/v1/collections", json=body), status, code)
    assert_error(client.get("/v1/collections/ok_name"), 404, "not_found")


def test_vector_backend_is_chosen_at_creation(client: TestClient, document: dict) -> None:
    r = client.post("/v1/collections", json={"name": "on_pgvector", "vector_backend": "pgvector"})
    assert r.status_code == 201, r.text
    assert_documented(document, "/v1/collections", "post", r)
    assert r.json()["vector_backend"] == "pgvector"
    assert client.delete("/v1/collections/on_pgvector").status_code == 204
    # A backend this service has not configured is refused, naming the ones it has.
    refused = client.post("/v1/collections", json={"name": "x", "vector_backend": "pinecone"})
    err = assert_error(refused, 400, "invalid_parameter")
    assert "pinecone" in err["message"] and "available: pgvector" in err["message"]
    described = document["paths"]["/v1/collections"]["post"]["requestBody"]["content"]
    assert "vector_backend" in described["application/json"]["schema"]["properties"]


# --- index, list, delete faces ----------------------------------------------------------------


def test_index_t1_indexes_six_faces(
    client: TestClient, document: dict, t1_collection: dict
) -> None:
    body = t1_collection
    assert body["model_version"].startswith("dlib-r29")
    assert len(body["indexed"]) == 6 and body["unindexed"] == []
    for face in body["indexed"]:
        assert face["external_image_id"] == "t1"
        assert {"face_id", "bounding_box", "confidence", "landmarks", "quality"} <= set(face)
        assert face["metadata"] == {} and face["created_at"]
    assert len({f["face_id"] for f in body["indexed"]}) == 6
    assert client.get("/v1/collections/group").json()["face_count"] == 6


def test_index_reports_why_faces_were_left_out(
    client: TestClient, document: dict, t1_bytes: bytes
) -> None:
    assert client.post("/v1/collections", json={"name": "two_only"}).status_code == 201
    r = post_image(
        client,
        "/v1/collections/two_only/faces",
        t1_bytes,
        max_faces="2",
        quality_filter="none",
        metadata='{"source": "t1", "n": 2}',
    )
    assert r.status_code == 200, r.text
    assert_documented(document, "/v1/collections/{name}/faces", "post", r)
    body = r.json()
    assert len(body["indexed"]) == 2 and len(body["unindexed"]) == 4
    assert all(f["metadata"] == {"source": "t1", "n": 2} for f in body["indexed"])
    assert all(u["reasons"] == ["EXCEEDS_MAX_FACES"] for u in body["unindexed"])
    assert all(set(u["face"]) >= {"bounding_box", "confidence"} for u in body["unindexed"])
    # The two kept are the two largest.
    kept = min(f["bounding_box"]["width"] * f["bounding_box"]["height"] for f in body["indexed"])
    left = max(
        u["face"]["bounding_box"]["width"] * u["face"]["bounding_box"]["height"]
        for u in body["unindexed"]
    )
    assert kept >= left
    assert client.get("/v1/collections/two_only").json()["face_count"] == 2


def test_index_with_a_base64_json_body(client: TestClient, astronaut_bytes: bytes) -> None:
    assert client.post("/v1/collections", json={"name": "json_index"}).status_code == 201
    r = client.post(
        "/v1/collections/json_index/faces",
        json={
            "image": b64(astronaut_bytes),
            "external_image_id": "eileen",
            "max_faces": 1,
            "quality_filter": "AUTO",
            "metadata": {"mission": "STS-93"},
        },
    )
    assert r.status_code == 200, r.text
    [face] = r.json()["indexed"]
    assert face["external_image_id"] == "eileen" and face["metadata"] == {"mission": "STS-93"}


def test_list_faces_pages_with_a_cursor(
    client: TestClient, document: dict, t1_collection: dict
) -> None:
    first = client.get("/v1/collections/group/faces", params={"limit": 4})
    assert first.status_code == 200, first.text
    assert_documented(document, "/v1/collections/{name}/faces", "get", first)
    assert len(first.json()["faces"]) == 4 and first.json()["next_cursor"]
    second = client.get(
        "/v1/collections/group/faces", params={"limit": 4, "cursor": first.json()["next_cursor"]}
    )
    assert second.status_code == 200, second.text
    assert len(second.json()["faces"]) == 2 and second.json()["next_cursor"] is None
    listed = {f["face_id"] for f in first.json()["faces"] + second.json()["faces"]}
    assert listed == {f["face_id"] for f in t1_collection["indexed"]}
    everything = client.get("/v1/collections/group/faces").json()
    assert {f["face_id"] for f in everything["faces"]} == listed


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=-3",
        "limit=abc",
        "limit=1.5",
        "limit=99999999",
        "limit=",
        "cursor=not-a-cursor",
        "cursor=%00%01",
        "cursor=" + "A" * 500,
    ],
)
def test_list_faces_rejects_bad_paging(client: TestClient, t1_collection: dict, query: str) -> None:
    assert_error(client.get(f"/v1/collections/group/faces?{query}"), 400, "invalid_parameter")


def test_delete_face(client: TestClient, document: dict, astronaut_bytes: bytes) -> None:
    assert client.post("/v1/collections", json={"name": "deleting"}).status_code == 201
    r = post_image(client, "/v1/collections/deleting/faces", astronaut_bytes)
    [face] = r.json()["indexed"]
    url = f"/v1/collections/deleting/faces/{face['face_id']}"
    deleted = client.delete(url)
    assert deleted.status_code == 200 and deleted.json() == {"deleted": [face["face_id"]]}
    assert_documented(document, "/v1/collections/{name}/faces/{face_id}", "delete", deleted)
    assert_error(client.delete(url), 404, "not_found")
    assert client.get("/v1/collections/deleting").json()["face_count"] == 0
    assert client.get("/v1/collections/deleting/faces").json()["faces"] == []


# --- search -----------------------------------------------------------------------------------


@pytest.mark.parametrize("person", [p for p, (_, probe) in PEOPLE.items() if probe])
def test_search_with_another_photo_finds_the_person_first(
    client: TestClient,
    document: dict,
    people: dict,
    people_dir: Path,
    person: str,
) -> None:
    probe = (people_dir / PEOPLE[person][1]).read_bytes()
    r = post_image(client, "/v1/collections/people/search", probe)
    assert r.status_code == 200, r.text
    assert_documented(document, "/v1/collections/{name}/search", "post", r)
    matches = r.json()["matches"]
    assert matches, f"no match for {person}"
    assert matches[0]["face"]["external_image_id"].split("#")[0] == person
    assert matches[0]["similarity"] >= thresholds.SEARCH
    similarities = [m["similarity"] for m in matches]
    assert similarities == sorted(similarities, reverse=True)
    assert all(s >= thresholds.SEARCH for s in similarities)
    assert {"bounding_box", "landmarks", "confidence"} <= set(r.json()["searched_face"])


def test_search_with_a_stranger_finds_no_match(
    client: TestClient, people: dict, astronaut_bytes: bytes
) -> None:
    r = post_image(client, "/v1/collections/people/search", astronaut_bytes)
    assert r.status_code == 200, r.text
    assert r.json()["matches"] == []
    # Threshold 0 shows everyone, best first, all below the default.
    r = client.post(
        "/v1/collections/people/search",
        json={"image": b64(astronaut_bytes), "threshold": 0, "max_results": 3},
    )
    assert r.status_code == 200, r.text
    similarities = [m["similarity"] for m in r.json()["matches"]]
    assert len(similarities) == 3 and similarities == sorted(similarities, reverse=True)
    assert max(similarities) < thresholds.SEARCH


def test_search_by_face_id_finds_the_same_person(
    client: TestClient, document: dict, people: dict
) -> None:
    obama = people["obama"][0]["indexed"][0]
    other_obama = people["obama"][1]["indexed"][0]
    url = f"/v1/collections/people/faces/{obama['face_id']}/search"
    for r in (client.post(url), client.post(url, json={"threshold": 70, "max_results": 2})):
        assert r.status_code == 200, r.text
        assert_documented(document, "/v1/collections/{name}/faces/{face_id}/search", "post", r)
        assert r.json()["searched_face"]["face_id"] == obama["face_id"]
        ids = [m["face"]["face_id"] for m in r.json()["matches"]]
        assert obama["face_id"] not in ids  # itself excluded
        assert ids[0] == other_obama["face_id"]


def test_search_by_unknown_face_id_is_404(client: TestClient, t1_collection: dict) -> None:
    face_id = "00000000-0000-0000-0000-000000000000"
    assert_error(client.post(f"/v1/collections/group/faces/{face_id}/search"), 404, "not_found")
    assert_error(client.delete(f"/v1/collections/group/faces/{face_id}"), 404, "not_found")
    # A path that climbs out of the collection matches no route at all.
    assert_error(client.delete("/v1/collections/group/faces/..%2F..%2Fetc"), 404, "not_found")


@pytest.mark.parametrize("face_id", ["not-a-uuid", "%00", "x" * 300, "1' OR '1'='1", "-1"])
def test_malformed_face_id_is_400(client: TestClient, t1_collection: dict, face_id: str) -> None:
    url = f"/v1/collections/group/faces/{quote(face_id, safe='%')}"
    assert (
        "face id" in assert_error(client.post(url + "/search"), 400, "invalid_parameter")["message"]
    )
    assert_error(client.delete(url), 400, "invalid_parameter")


def test_search_a_missing_collection_is_404(client: TestClient, astronaut_bytes: bytes) -> None:
    r = post_image(client, "/v1/collections/nowhere/search", astronaut_bytes)
    assert_error(r, 404, "not_found")
    assert_error(
        post_image(client, "/v1/collections/nowhere/faces", astronaut_bytes), 404, "not_found"
    )
    assert_error(client.get("/v1/collections/nowhere/faces"), 404, "not_found")


def test_search_an_image_without_a_face_is_400(client: TestClient, t1_collection: dict) -> None:
    no_face = encode(Image.fromarray(quadrants()), "PNG")
    r = post_image(client, "/v1/collections/group/search", no_face)
    err = assert_error(r, 400, "invalid_parameter")
    assert "no face" in err["message"]


# --- compare ----------------------------------------------------------------------------------


def test_compare_finds_obama_among_the_faces_of_a_group(
    client: TestClient, document: dict, people_dir: Path, faces_dir: Path
) -> None:
    source = (people_dir / "obama" / "obama2.jpg").read_bytes()
    target = (faces_dir / "groups" / "face_recognition" / "obama_and_biden.jpg").read_bytes()
    r = client.post(
        "/v1/compare",
        files={"source": ("s.jpg", source), "target": ("t.jpg", target)},
        data={"threshold": "80"},
    )
    assert r.status_code == 200, r.text
    assert_documented(document, "/v1/compare", "post", r)
    body = r.json()
    assert len(body["matches"]) == 1 and body["matches"][0]["similarity"] >= 80
    assert len(body["unmatched"]) >= 2
    assert body["source_face"]["bounding_box"]


def test_compare_a_stranger_with_t1_matches_nobody(
    client: TestClient, astronaut_bytes: bytes, t1_bytes: bytes
) -> None:
    r = client.post("/v1/compare", json={"source": b64(astronaut_bytes), "target": b64(t1_bytes)})
    assert r.status_code == 200, r.text
    assert r.json()["matches"] == [] and len(r.json()["unmatched"]) == 6


# --- bad images and bad requests --------------------------------------------------------------

BAD_IMAGES = {
    "truncated-jpeg": (lambda: noisy_jpeg()[: len(noisy_jpeg()) // 2], 400, "invalid_image"),
    "text": (lambda: b"hello, this is a text file\nnot an image\n" * 4, 400, "invalid_image"),
    "empty": (lambda: b"", 400, "invalid_image"),
    "1x1-png": (lambda: encode(Image.new("RGB", (1, 1)), "PNG"), 400, "invalid_image"),
    "30000x30000-png-header": (
        lambda: raw_png(30000, 30000, 8, 2, b"\0" * 16),
        413,
        "image_too_large",
    ),
    "gif": (lambda: encode(Image.fromarray(quadrants()), "GIF"), 415, "unsupported_format"),
}


@pytest.mark.parametrize("kind", BAD_IMAGES)
def test_every_bad_image_gets_its_4xx_on_every_image_route(
    client: TestClient, t1_collection: dict, astronaut_bytes: bytes, kind: str
) -> None:
    make, status, code = BAD_IMAGES[kind]
    data = make()
    for url in ("/v1/detect", "/v1/collections/group/faces", "/v1/collections/group/search"):
        assert_error(post_image(client, url, data), status, code)
        if data:
            assert_error(client.post(url, json={"image": b64(data)}), status, code)
    good = astronaut_face(astronaut_bytes)
    for files in ({"source": data, "target": good}, {"source": good, "target": data}):
        r = client.post("/v1/compare", files={k: (k, v) for k, v in files.items()})
        assert_error(r, status, code)
    assert client.get("/v1/collections/group").json()["face_count"] == 6


@pytest.mark.parametrize(
    ("kwargs", "status", "code", "mentions"),
    [
        (
            {"content": b"{not json", "headers": {"content-type": "application/json"}},
            400,
            "invalid_json",
            "JSON",
        ),
        (
            {"content": b"[1, 2]", "headers": {"content-type": "application/json"}},
            400,
            "invalid_json",
            "object",
        ),
        (
            {"content": b"[" * 100_000, "headers": {"content-type": "application/json"}},
            400,
            "invalid_json",
            "JSON",
        ),
        ({"json": {}}, 400, "invalid_parameter", "image"),
        ({"json": {"img": "x"}}, 400, "invalid_parameter", "image"),
        ({"json": {"image": "@@@ not base64 @@@"}}, 400, "invalid_parameter", "base64"),
        ({"json": {"image": 12345}}, 400, "invalid_parameter", "image"),
        ({"data": {"max_faces": "1"}}, 400, "invalid_parameter", "image"),
        (
            {"content": b"\xff\xd8\xff", "headers": {"content-type": "image/jpeg"}},
            415,
            "unsupported_media_type",
            "content type",
        ),
        (
            {"content": b"image=abc", "headers": {"content-type": "text/plain"}},
            415,
            "unsupported_media_type",
            "content type",
        ),
        (
            {"content": b"--x\r\nbroken", "headers": {"content-type": "multipart/form-data"}},
            400,
            "invalid_parameter",
            "form",
        ),
        (
            {
                "content": b"--x\r\nbroken",
                "headers": {"content-type": "multipart/form-data; boundary=x"},
            },
            400,
            "invalid_parameter",
            "image",  # an unterminated multipart body parses as an empty form
        ),
    ],
)
def test_malformed_requests(
    client: TestClient, kwargs: dict, status: int, code: str, mentions: str
) -> None:
    err = assert_error(client.post("/v1/detect", **kwargs), status, code)
    assert mentions.lower() in err["message"].lower()


def test_compare_names_the_missing_image(client: TestClient, astronaut_bytes: bytes) -> None:
    err = assert_error(
        client.post("/v1/compare", json={"source": b64(astronaut_bytes)}), 400, "invalid_parameter"
    )
    assert "target" in err["message"]
    r = client.post("/v1/compare", files={"target": ("t", astronaut_bytes)})
    assert "source" in assert_error(r, 400, "invalid_parameter")["message"]


@pytest.mark.parametrize(
    ("fields", "mentions"),
    [
        ({"max_faces": "abc"}, "max_faces"),
        ({"max_faces": "0"}, "max_faces"),
        ({"max_faces": "101"}, "max_faces"),
        ({"max_faces": "1e3"}, "max_faces"),
        ({"quality_filter": "SUPERB"}, "quality_filter"),
        ({"metadata": "[1]"}, "metadata"),
        ({"external_image_id": "x" * 256}, "external_image_id"),
    ],
)
def test_bad_index_parameters(
    client: TestClient, t1_collection: dict, astronaut_bytes: bytes, fields: dict, mentions: str
) -> None:
    r = post_image(client, "/v1/collections/group/faces", astronaut_bytes, **fields)
    assert mentions in assert_error(r, 400, "invalid_parameter")["message"]


@pytest.mark.parametrize(
    ("fields", "mentions"),
    [
        ({"threshold": -5}, "threshold"),
        ({"threshold": 100.5}, "threshold"),
        ({"threshold": "abc"}, "threshold"),
        ({"threshold": True}, "threshold"),
        ({"threshold": [80]}, "threshold"),
        ({"max_results": 0}, "max_results"),
        ({"max_results": 10**9}, "max_results"),
        ({"max_results": 2.5}, "max_results"),
        ({"max_results": "5"}, "max_results"),
    ],
)
def test_bad_search_parameters(
    client: TestClient, t1_collection: dict, astronaut_bytes: bytes, fields: dict, mentions: str
) -> None:
    body = json.dumps({"image": b64(astronaut_face(astronaut_bytes)), **fields})
    headers = {"content-type": "application/json"}
    r = client.post("/v1/collections/group/search", content=body, headers=headers)
    assert mentions in assert_error(r, 400, "invalid_parameter")["message"]
    face_id = t1_collection["indexed"][0]["face_id"]
    r = client.post(f"/v1/collections/group/faces/{face_id}/search", content=body, headers=headers)
    assert mentions in assert_error(r, 400, "invalid_parameter")["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"name": "nan_meta", "metadata": {"k": NaN}}', "request body"),
        ('{"name": "inf_meta", "metadata": {"k": -Infinity}}', "request body"),
        ('{"name": "half_pair", "metadata": {"k": "\\ud800"}}', "request body"),
        ('{"name": "half_pair", "metadata": {"\\udfff": 1}}', "request body"),
    ],
)
def test_json_that_is_not_json_or_not_unicode_is_400(
    client: TestClient, body: str, field: str
) -> None:
    r = client.post("/v1/collections", content=body, headers={"content-type": "application/json"})
    assert field in assert_error(r, 400, "invalid_json")["message"]
    # Surrogate pairs that make a real character are fine.
    r = client.post("/v1/collections", json={"name": "emoji_meta", "metadata": {"k": "\U0001f600"}})
    assert r.status_code in (201, 409), r.text


@pytest.mark.parametrize(
    "fields",
    [
        {"metadata": "{not json"},
        {"metadata": '{"k": NaN}'},
        {"metadata": '{"k": "\\ud800"}'},
    ],
)
def test_bad_metadata_in_a_form_field(
    client: TestClient, t1_collection: dict, astronaut_bytes: bytes, fields: dict
) -> None:
    r = post_image(client, "/v1/collections/group/faces", astronaut_face(astronaut_bytes), **fields)
    assert "metadata" in assert_error(r, 400, "invalid_json")["message"]
    r = client.post(
        "/v1/collections/group/faces",
        # json.dumps writes the lone surrogate as the escape \\udc00.
        content=json.dumps({"image": b64(astronaut_bytes), "external_image_id": "\udc00"}),
        headers={"content-type": "application/json"},
    )
    assert_error(r, 400, "invalid_json")


@pytest.mark.parametrize("metadata", [{"k": "a\u0000b"}, {"\u0000": 1}, {"k": ["\u0000"]}])
def test_metadata_holding_nul_is_400(
    service: Services, astronaut_bytes: bytes, metadata: dict
) -> None:
    client = TestClient(build_rest_app(service), raise_server_exceptions=False)
    assert_error(
        client.post("/v1/collections", json={"name": "nul", "metadata": metadata}),
        400,
        "invalid_parameter",
    )
    r = client.post(
        "/v1/collections/group/faces",
        json={"image": b64(astronaut_face(astronaut_bytes)), "metadata": metadata},
    )
    assert_error(r, 400, "invalid_parameter")


@pytest.mark.parametrize("threshold", ["-5", "abc", "nan", "inf", "1e400", ""])
def test_bad_thresholds_in_form_fields(
    client: TestClient, astronaut_bytes: bytes, threshold: str
) -> None:
    face = astronaut_face(astronaut_bytes)
    r = client.post(
        "/v1/compare",
        files={"source": ("s", face), "target": ("t", face)},
        data={"threshold": threshold},
    )
    assert "threshold" in assert_error(r, 400, "invalid_parameter")["message"]


def test_unknown_route_and_wrong_method_use_the_error_shape(client: TestClient) -> None:
    assert_error(client.get("/v2/whatever"), 404, "not_found")
    assert_error(client.get("/v1/collections/a/b/c/d/e"), 404, "not_found")
    r = client.put("/v1/detect")
    assert_error(r, 405, "method_not_allowed")
    assert r.headers["allow"] == "POST"
    assert_error(client.patch("/v1/collections/people"), 405, "method_not_allowed")


# --- body size --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_app(service: Services, pack: DlibR29Pack) -> Any:
    """An app whose images may be at most 100 kB (t1.jpg is 129 kB)."""
    limits = ImageLimits(max_bytes=100_000)
    pipelines = {pack.name: LocalPipeline(pack, limits)}
    small = Services.build(service.context.storage, pipelines, pack.name)
    return build_rest_app(small, max_image_bytes=limits.max_bytes)


def test_image_over_the_byte_limit_is_413(small_app: Any, t1_bytes: bytes) -> None:
    client = TestClient(small_app)
    err = assert_error(post_image(client, "/v1/detect", t1_bytes), 413, "image_too_large")
    assert "100,000 bytes" in err["message"]
    r = client.post("/v1/detect", content=b"x" * 300_000, headers={"content-type": "text/plain"})
    assert_error(r, 413, "request_too_large")


def asgi_post(app: Any, headers: list[tuple[bytes, bytes]], chunk: bytes) -> tuple[int, int]:
    """POST /v1/detect straight through ASGI with an endless body; (status, chunks read)."""
    reads = 0

    async def receive() -> dict:
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": chunk, "more_body": True}

    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/detect",
        "raw_path": b"/v1/detect",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }
    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], reads


def test_oversized_body_is_refused_before_it_is_read(small_app: Any) -> None:
    declared = [(b"content-type", b"application/json"), (b"content-length", b"5000000000")]
    status, reads = asgi_post(small_app, declared, b"{" * 65536)
    assert (status, reads) == (413, 0)
    # Chunked (no length): the body is cut off once it passes the cap (~197 kB here).
    status, reads = asgi_post(small_app, [(b"content-type", b"application/json")], b"{" * 65536)
    assert status == 413 and reads <= 4


# --- health, readiness, metrics, docs ---------------------------------------------------------


def test_healthz_and_readyz(service: Services) -> None:
    async def ready() -> dict[str, bool]:
        return {"models": True, "database": True}

    async def database_down() -> dict[str, bool]:
        return {"models": True, "database": False}

    async def broken() -> dict[str, bool]:
        raise ConnectionError("no route to host")

    for readiness, status in ((None, 200), (ready, 200), (database_down, 503), (broken, 503)):
        client = TestClient(build_rest_app(service, readiness))
        assert client.get("/healthz").json() == {"status": "ok"}
        r = client.get("/readyz")
        assert r.status_code == status
        if readiness is database_down:
            assert r.json() == {
                "status": "not_ready",
                "checks": {"models": True, "database": False},
            }
        if readiness is ready:
            assert r.json()["checks"] == {"models": True, "database": True}


def test_metrics_count_requests_by_route_template(
    service: Services, astronaut_bytes: bytes
) -> None:
    client = TestClient(build_rest_app(service))  # a registry of its own: counts start at 0
    assert client.post("/v1/collections", json={"name": "metrics"}).status_code == 201
    for _ in range(2):
        r = post_image(client, "/v1/collections/metrics/faces", astronaut_bytes)
        assert len(r.json()["indexed"]) == 1
    client.get("/v1/collections/metrics")
    client.get("/v1/collections/metrics/faces?limit=zzz")
    client.get("/random/path/123")
    client.put("/v1/detect")

    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    requests = {
        (s.labels["route"], s.labels["method"], s.labels["status"]): s.value
        for s in families["faceserve_requests"].samples
        if s.name == "faceserve_requests_total"
    }
    assert requests[("/v1/collections/{name}/faces", "POST", "200")] == 2
    assert requests[("/v1/collections/{name}", "GET", "200")] == 1
    assert requests[("/v1/collections/{name}/faces", "GET", "400")] == 1
    assert requests[("unmatched", "GET", "404")] == 1
    assert requests[("/v1/detect", "PUT", "405")] == 1
    assert not any("metrics" in route.split("/") or "123" in route for route, _, _ in requests)
    counts = {
        s.labels["route"]: s.value
        for s in families["faceserve_request_duration_seconds"].samples
        if s.name.endswith("_count") and s.labels["method"] == "POST"
    }
    assert counts["/v1/collections/{name}/faces"] == 2
    indexed = {
        s.labels["collection"]: s.value
        for s in families["faceserve_faces_indexed"].samples
        if s.name == "faceserve_faces_indexed_total"
    }
    assert indexed == {"metrics": 2}


def test_openapi_describes_every_route(client: TestClient, document: dict) -> None:
    assert document["openapi"].startswith("3.1")
    # Every route of the API is described, and every described path is routed; the docs
    # page and its assets are not API routes.
    routed = {
        (route.path, method.lower())
        for route in client.app.routes
        if isinstance(route, APIRoute) and route.include_in_schema
        for method in route.methods - {"HEAD"}
    }
    described = {(path, method) for path, item in document["paths"].items() for method in item}
    assert routed == described
    assert {"/v1/detect", "/healthz", "/readyz", "/metrics"} <= {path for path, _ in routed}
    for name, schema in document["components"]["schemas"].items():
        Draft202012Validator.check_schema(schema)
        assert name.isidentifier(), name
    refs = set(re.findall(r'"#/components/schemas/(\w+)"', json.dumps(document)))
    assert refs <= set(document["components"]["schemas"])
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert operation["summary"] and operation["responses"], (path, method)
            # Validation errors are 400 invalid_parameter here, never FastAPI's 422 body.
            assert "HTTPValidationError" not in json.dumps(operation), (path, method)
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == set(re.findall(r"\{(\w+)\}", path)), (path, method)
            # A job's state changes and a person's erasure are actions named by their path.
            actions = ("/pause", "/resume", "/cancel", "/erase")
            if method == "post" and path.startswith("/v1/") and not path.endswith(actions):
                assert "application/json" in operation["requestBody"]["content"]
            if path.startswith("/v1/"):
                assert "400" in operation["responses"] and "500" in operation["responses"]
                assert {"401", "403", "429"} <= set(operation["responses"]), (path, method)
                assert operation["security"], (path, method)
    # The limits are the service's, stated once and seen in the document.
    index = document["paths"]["/v1/collections/{name}/faces"]["post"]
    max_faces = index["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert {
        k: v
        for option in max_faces["max_faces"]["anyOf"]
        for k, v in option.items()
        if k in ("minimum", "maximum")
    } == {"minimum": 1, "maximum": 100}


def test_docs_page_is_interactive_and_works_offline(client: TestClient, document: dict) -> None:
    r = client.get("/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    assert "SwaggerUIBundle" in page and "/openapi.json" in page
    # Every asset the page loads comes from this service, none from a CDN.
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert assets, page
    for url in assets:
        assert url.startswith("/"), url
        asset = client.get(url)
        assert asset.status_code == 200 and len(asset.content) > 100, url
    assert not re.findall(r"https?://(?!127\.0\.0\.1)[\w.-]+", page)
    # The newcomer's first request is on the page (from the document's description).
    assert "curl -X POST http://127.0.0.1:8000/v1/detect -F image=@image.jpg" in json.dumps(
        document["info"]
    )


def test_unexpected_failure_is_a_generic_500_with_the_traceback_in_the_log(
    service: Services, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(FaceService):
        async def list_collections(self) -> list:
            raise RuntimeError("password=hunter2 in a stack trace")

    broken = dataclasses.replace(service, faces=Broken(service.context))
    client = TestClient(build_rest_app(broken), raise_server_exceptions=False)
    with caplog.at_level(logging.ERROR):
        r = client.get("/v1/collections")
    err = assert_error(r, 500, "internal_error")
    assert "hunter2" not in r.text and "Traceback" not in r.text
    assert "internal error" in err["message"]
    assert any("hunter2" in (record.exc_text or "") for record in caplog.records)


# --- persons ----------------------------------------------------------------------------------

PERSONS = "/v1/collections/people/persons"


def face_ids_of(people: dict, person: str) -> list[str]:
    return [r["indexed"][0]["face_id"] for r in people[person]]


def test_person_lifecycle(client: TestClient, document: dict, people: dict) -> None:
    path = "/v1/collections/{name}/persons"
    r = client.post(PERSONS, json={"person_id": "rest:obama", "metadata": {"role": "44"}})
    assert r.status_code == 201, r.text
    assert_documented(document, path, "post", r)
    created = r.json()
    assert (created["person_id"], created["metadata"], created["face_count"]) == (
        "rest:obama",
        {"role": "44"},
        0,
    )
    assert_error(client.post(PERSONS, json={"person_id": "rest:obama"}), 409, "already_exists")
    for bad in ({}, {"person_id": ""}, {"person_id": "a b"}, {"person_id": "x" * 129}):
        assert_error(client.post(PERSONS, json=bad), 400, "invalid_parameter")
    assert client.post(PERSONS, data={"person_id": "rest:form"}).status_code == 201

    r = client.get(f"{PERSONS}/rest:obama")
    assert r.status_code == 200 and r.json() == created
    assert_documented(document, path + "/{person_id}", "get", r)
    assert_error(client.get(f"{PERSONS}/rest:nobody"), 404, "not_found")
    assert_error(client.get("/v1/collections/nowhere/persons/rest:obama"), 404, "not_found")

    pages, cursor = [], None
    while True:
        r = client.get(PERSONS, params={"limit": 1, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        assert_documented(document, path, "get", r)
        pages.append([p["person_id"] for p in r.json()["persons"]])
        cursor = r.json()["next_cursor"]
        if cursor is None:
            break
    assert all(len(page) <= 1 for page in pages)
    assert {"rest:obama", "rest:form"} <= {pid for page in pages for pid in page}
    assert_error(client.get(PERSONS, params={"cursor": "junk"}), 400, "invalid_parameter")

    described = client.get("/v1/collections/people").json()
    assert described["person_count"] >= 2
    assert client.delete(f"{PERSONS}/rest:form").status_code == 204
    assert_error(client.delete(f"{PERSONS}/rest:form"), 404, "not_found")
    assert_error(
        client.delete(f"{PERSONS}/rest:obama?delete_faces=maybe"), 400, "invalid_parameter"
    )
    assert client.delete(f"{PERSONS}/rest:obama").status_code == 204


def test_associate_search_merge_and_delete_persons(
    client: TestClient, document: dict, people: dict, people_dir: Path, astronaut_bytes: bytes
) -> None:
    obama, biden, kit = (face_ids_of(people, p) for p in ("obama", "biden", "kit_harington"))
    for pid in ("assoc:obama", "assoc:biden", "assoc:spare"):
        assert client.post(PERSONS, json={"person_id": pid}).status_code == 201
    faces_path = "/v1/collections/{name}/persons/{person_id}/faces"

    r = client.post(f"{PERSONS}/assoc:obama/faces", json={"face_ids": obama})
    assert r.status_code == 200, r.text
    assert_documented(document, faces_path, "post", r)
    assert r.json()["associated"] == obama and r.json()["unsuccessful"] == []
    assert r.json()["person"]["face_count"] == 2
    missing = str(uuid.uuid4())
    r = client.post(f"{PERSONS}/assoc:biden/faces", data={"face_ids": ",".join(biden)})
    assert r.status_code == 200 and r.json()["associated"] == biden, r.text

    # Idempotent for its own face; refused for another's, a stranger's or an unknown face.
    r = client.post(
        f"{PERSONS}/assoc:obama/faces", json={"face_ids": [obama[0], biden[0], kit[0], missing]}
    )
    assert r.status_code == 200, r.text
    assert_documented(document, faces_path, "post", r)
    assert r.json()["associated"] == [obama[0]]
    refused = {u["face_id"]: u for u in r.json()["unsuccessful"]}
    assert refused[biden[0]]["reasons"] == ["ASSOCIATED_TO_A_DIFFERENT_USER"]
    assert refused[biden[0]]["person_id"] == "assoc:biden"
    assert refused[kit[0]]["reasons"] == ["LOW_MATCH_CONFIDENCE"]
    assert refused[kit[0]]["similarity"] < thresholds.ASSOCIATION
    assert refused[missing]["reasons"] == ["FACE_NOT_FOUND"]
    listed = client.get("/v1/collections/people/faces", params={"limit": 4096}).json()["faces"]
    assert {f["face_id"]: f["person_id"] for f in listed}[obama[1]] == "assoc:obama"

    too_many = [str(uuid.uuid4()) for _ in range(101)]
    err = assert_error(
        client.post(f"{PERSONS}/assoc:obama/faces", json={"face_ids": too_many}),
        400,
        "invalid_parameter",
    )
    assert "100" in err["message"]
    for bad in ({}, {"face_ids": "x"}, {"face_ids": [1]}, {"face_ids": obama, "threshold": "hi"}):
        assert_error(
            client.post(f"{PERSONS}/assoc:obama/faces", json=bad), 400, "invalid_parameter"
        )
    assert_error(
        client.post(f"{PERSONS}/assoc:nobody/faces", json={"face_ids": kit}), 404, "not_found"
    )

    # Search persons by a new photo of each, by a stranger, and by an indexed face.
    search_path = "/v1/collections/{name}/persons/search"
    for pid, person in (("assoc:obama", "obama"), ("assoc:biden", "biden")):
        probe = (people_dir / PEOPLE[person][1]).read_bytes()
        r = post_image(client, f"{PERSONS}/search", probe)
        assert r.status_code == 200, r.text
        assert_documented(document, search_path, "post", r)
        matches = r.json()["matches"]
        assert matches[0]["person"]["person_id"] == pid
        assert matches[0]["similarity"] >= thresholds.PERSON_SEARCH
    r = client.post(f"{PERSONS}/search", json={"image": b64(astronaut_bytes)})
    assert r.status_code == 200 and r.json()["matches"] == [], r.text
    assert_error(
        client.post(f"{PERSONS}/search", json={"image": b64(astronaut_bytes), "max_results": 501}),
        400,
        "invalid_parameter",
    )
    by_face = f"/v1/collections/people/faces/{obama[0]}/persons/search"
    r = client.post(by_face)
    assert r.status_code == 200, r.text
    assert_documented(document, "/v1/collections/{name}/faces/{face_id}/persons/search", "post", r)
    assert r.json()["searched_face"]["face_id"] == obama[0]
    assert [m["person"]["person_id"] for m in r.json()["matches"]] == ["assoc:obama"]

    # Disassociate (a JSON body on DELETE), merge, delete.
    r = client.request(
        "DELETE", f"{PERSONS}/assoc:biden/faces", json={"face_ids": [*biden, obama[0]]}
    )
    assert r.status_code == 200, r.text
    assert_documented(document, faces_path, "delete", r)
    assert r.json()["associated"] == biden
    assert r.json()["unsuccessful"][0]["reasons"] == ["ASSOCIATED_TO_A_DIFFERENT_USER"]
    assert r.json()["person"]["face_count"] == 0

    merge_path = "/v1/collections/{name}/persons/{person_id}/merge"
    r = client.post(f"{PERSONS}/assoc:spare/merge", json={"other_person_id": "assoc:obama"})
    assert r.status_code == 200, r.text
    assert_documented(document, merge_path, "post", r)
    assert (r.json()["person_id"], r.json()["face_count"]) == ("assoc:spare", 2)
    assert_error(client.get(f"{PERSONS}/assoc:obama"), 404, "not_found")
    assert_error(client.post(f"{PERSONS}/assoc:spare/merge", json={}), 400, "invalid_parameter")
    assert_error(
        client.post(f"{PERSONS}/assoc:spare/merge", json={"other_person_id": "assoc:spare"}),
        400,
        "invalid_parameter",
    )

    assert client.delete(f"{PERSONS}/assoc:spare?delete_faces=false").status_code == 204
    listed = client.get("/v1/collections/people/faces", params={"limit": 4096}).json()["faces"]
    owners = {f["face_id"]: f["person_id"] for f in listed}
    assert [owners[i] for i in obama] == [None, None]  # the faces stayed
    assert client.delete(f"{PERSONS}/assoc:biden").status_code == 204


def test_person_requests_with_a_token_are_idempotent(client: TestClient, people: dict) -> None:
    body = {"person_id": "token:one", "request_token": "rest-token-1"}
    first = client.post(PERSONS, json=body)
    again = client.post(PERSONS, json=body)
    assert first.status_code == again.status_code == 201 and first.json() == again.json()
    err = assert_error(
        client.post(PERSONS, json={**body, "metadata": {"changed": True}}),
        400,
        "idempotent_parameter_mismatch",
    )
    assert "idempotent" in err["message"]
    url = f"{PERSONS}/token:one?request_token=rest-token-2"
    assert client.delete(url).status_code == 204
    assert client.delete(url).status_code == 204  # the retry gets the first reply
    assert_error(client.delete(f"{PERSONS}/token:one"), 404, "not_found")


# --- fuzz -------------------------------------------------------------------------------------

ROUTES = [
    ("POST", "/v1/detect"),
    ("POST", "/v1/compare"),
    ("POST", "/v1/collections"),
    ("GET", "/v1/collections"),
    ("GET", "/v1/collections/{name}"),
    ("DELETE", "/v1/collections/{name}"),
    ("POST", "/v1/collections/{name}/faces"),
    ("GET", "/v1/collections/{name}/faces"),
    ("DELETE", "/v1/collections/{name}/faces/{face_id}"),
    ("POST", "/v1/collections/{name}/search"),
    ("POST", "/v1/collections/{name}/faces/{face_id}/search"),
    ("POST", "/v1/collections/{name}/persons"),
    ("GET", "/v1/collections/{name}/persons"),
    ("POST", "/v1/collections/{name}/persons/search"),
    ("GET", "/v1/collections/{name}/persons/{person_id}"),
    ("DELETE", "/v1/collections/{name}/persons/{person_id}"),
    ("POST", "/v1/collections/{name}/persons/{person_id}/faces"),
    ("DELETE", "/v1/collections/{name}/persons/{person_id}/faces"),
    ("POST", "/v1/collections/{name}/persons/{person_id}/merge"),
    ("POST", "/v1/collections/{name}/faces/{face_id}/persons/search"),
]
IMAGE_FIELDS = ["image", "source", "target"]
FIELDS = IMAGE_FIELDS + ["name", "model_pack", "metadata", "external_image_id", "max_faces"]
FIELDS += ["quality_filter", "threshold", "max_results", "limit", "cursor"]
FIELDS += ["person_id", "other_person_id", "face_ids", "request_token", "delete_faces"]
NAMES = ["fuzz_target", "fuzz_target", "nowhere", "../../etc", "x" * 400, "名前", "a'; --"]
NAMES += ["%00", "UPPER", "-", "_", "a.b", " "]
FACE_IDS = ["../../etc", "0", "-1", "x" * 1000, "null", "%ff", str(uuid.UUID(int=0))]
PERSON_IDS = ["fuzz", "fuzz", "abc", "a:b.c-d_e", "x" * 200, "名前", "a'; --", "%00", "search"]
VALUES = ["abc", -5, 0, 1, 2**63, 10**30, 1e308, -1e-9, 3.5, "nan", "inf", None, True, False]
VALUES += [[], [1, 2], {}, {"a": {"b": [None]}}, "", "x" * 5000, "AUTO", "HIGH", 80, "80"]
CONTENT_TYPES = ["application/json", "multipart/form-data; boundary=zz", "image/png", "", "*/*"]
CONTENT_TYPES += ["application/x-www-form-urlencoded", "multipart/form-data"]


class Fuzzer:
    """Random requests: junk paths, query strings, bodies of every kind, junk images."""

    def __init__(self, seed: int, face: bytes, face_id: str) -> None:
        self.rng = random.Random(seed)
        self.face = face
        self.face_ids = [*FACE_IDS, face_id, face_id.upper(), face_id + "0"]
        self.images = [encode(Image.fromarray(quadrants()), f) for f in ("PNG", "GIF", "TIFF")]

    def text(self) -> str:
        alphabet = string.printable + "ÿ€名\u0000"
        return "".join(self.rng.choice(alphabet) for _ in range(self.rng.randint(0, 40)))

    def value(self) -> Any:
        # No U+0000 inside metadata here: see test_metadata_holding_nul_is_400.
        note = {"note": self.text().replace("\0", ""), "n": [1.5, None]}
        return self.rng.choice([*VALUES, self.text(), b64(self.rng.randbytes(20)), note])

    def image(self) -> bytes:
        rng = self.rng
        return rng.choice(
            [
                rng.randbytes(rng.randint(0, 2048)),
                self.face[: rng.randint(0, len(self.face))],
                self.face,
                rng.choice(self.images),
                raw_png(rng.randint(0, 2**31 - 1), rng.randint(0, 70000), 8, 2, b"\0"),
            ]
        )

    def request(self) -> tuple[str, str, dict[str, Any]]:
        rng = self.rng
        method, template = rng.choice(ROUTES)
        if rng.random() < 0.1:
            method = rng.choice(["PUT", "PATCH", "OPTIONS", "GET", "DELETE", "POST"])
        name, face_id = rng.choice(NAMES), rng.choice(self.face_ids)
        person_id = rng.choice(PERSON_IDS)
        path = template.format(
            name=quote(name, safe=""),
            face_id=quote(face_id, safe=""),
            person_id=quote(person_id, safe=""),
        )
        if rng.random() < 0.5:
            pairs = [(rng.choice(FIELDS), str(self.value())) for _ in range(rng.randint(1, 3))]
            path += "?" + "&".join(f"{quote(k)}={quote(v)}" for k, v in pairs)
        fields = rng.sample(FIELDS, rng.randint(0, 6))
        kind = rng.choice(["json", "multipart", "form", "raw", "none"])
        if kind == "json":
            body = {
                f: b64(self.image()) if f in IMAGE_FIELDS and rng.random() < 0.6 else self.value()
                for f in fields
            }
            headers = {"content-type": "application/json"}
            return method, path, {"content": json.dumps(body), "headers": headers}
        if kind == "multipart":
            files = {f: (f, self.image()) for f in fields if f in IMAGE_FIELDS}
            data = {f: str(self.value()) for f in fields if f not in files}
            return method, path, {"files": files or {"image": ("i", b"")}, "data": data}
        if kind == "form":
            return method, path, {"data": {f: str(self.value()) for f in fields}}
        if kind == "raw":
            headers = {"content-type": rng.choice(CONTENT_TYPES)}
            return method, path, {"content": rng.randbytes(rng.randint(0, 512)), "headers": headers}
        return method, path, {}


def test_fuzz_never_gets_a_500(client: TestClient, astronaut_bytes: bytes) -> None:
    face = astronaut_face(astronaut_bytes)
    assert client.post("/v1/collections", json={"name": "fuzz_target"}).status_code == 201
    r = post_image(client, "/v1/collections/fuzz_target/faces", face)
    assert client.post("/v1/collections/fuzz_target/persons", json={"person_id": "fuzz"}).is_success
    fuzzer = Fuzzer(20240611, face, r.json()["indexed"][0]["face_id"])
    statuses: dict[int, int] = {}
    for _ in range(1000):
        method, path, kwargs = fuzzer.request()
        r = client.request(method, path, **kwargs)
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
        assert r.status_code < 500, (method, path, kwargs.get("data"), r.text)
        if r.status_code >= 400:
            assert set(r.json()) == {"error"} and r.json()["error"]["code"], r.text
    # The loop got past request parsing into the service and the store, many times.
    assert sum(n for status, n in statuses.items() if status < 300) >= 20, statuses
    assert statuses.get(404, 0) >= 20 and statuses.get(400, 0) >= 100, statuses
