"""End to end over HTTP against a real Ray Serve instance, embedded PostgreSQL underneath."""

from __future__ import annotations

import base64
import shutil
import socket
import struct
import tempfile
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from serve_app.app import SERVE_CONFIG
from serve_app.config import Settings
from serve_app.server import start_local, stop_local
from serve_app.service import thresholds
from serve_app.store.embedded import EmbeddedPostgres

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

# Enrolment photo and a *different* query photo per person.
PEOPLE = {
    "obama": ("face_recognition/obama/obama.jpg", "face_recognition/obama/obama2.jpg"),
    "biden": ("face_recognition/biden/biden.jpg", "face_recognition/biden/biden2.jpg"),
    "kit_harington": (
        "face_recognition/kit_harington/john1.jpeg",
        "face_recognition/kit_harington/john2.jpeg",
    ),
    "alex_lacamoire": (
        "face_recognition/alex_lacamoire/img1.jpg",
        "face_recognition/alex_lacamoire/alex_lacamoire1.jpg",
    ),
    "person_01": ("deepface/person_01/img1.jpg", "deepface/person_01/img2.jpg"),
    "john_salley": ("dlib_johns/John_Salley", "dlib_johns/John_Salley"),
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalService:
    """Embedded PostgreSQL + `faceserve serve`'s start/stop, restartable on one data dir."""

    def __init__(self, data_dir: Path, model_dir: Path) -> None:
        self.data_dir, self.model_dir = data_dir, model_dir
        self.port = _free_port()
        # Its own server, not the shared one: the restart test stops the database with the
        # service and checks nothing is lost across both.
        self.postgres = EmbeddedPostgres(data_dir / "pg")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        settings = Settings(
            model_dir=self.model_dir,
            data_dir=self.data_dir,
            database_url=self.postgres.start(),
            port=self.port,
            admin_key=E2E_ADMIN_KEY,  # auth on, as deployed
            cluster_ray_min_faces=0,  # every clustering run plans in its Ray task
        )
        start_local(settings, SERVE_CONFIG, num_cpus=2)

    def stop(self) -> None:
        stop_local()
        self.postgres.stop()


E2E_ADMIN_KEY = "e2e-admin-" + "e" * 40


@pytest.fixture(scope="module")
def service(model_dir: Path) -> Iterator[LocalService]:
    # Not under pytest's tmp dir: pytest resets it to 0700, locking out the database's OS user.
    data_dir = Path(tempfile.mkdtemp(prefix="faceserve-e2e-"))
    svc = LocalService(data_dir, model_dir)
    svc.start()
    try:
        yield svc
    finally:
        svc.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def client(service: LocalService) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {E2E_ADMIN_KEY}"}
    with httpx.Client(base_url=service.url, timeout=60, headers=headers) as c:
        yield c


def _photo(faces_dir: Path, rel: str, index: int = 0) -> bytes:
    path = faces_dir / "people" / rel
    if path.is_dir():
        path = sorted(path.iterdir())[index]
    return path.read_bytes()


def _search(client: httpx.Client, collection: str, image: bytes) -> dict:
    r = client.post(f"/v1/collections/{collection}/search", files={"image": ("q.jpg", image)})
    assert r.status_code == 200, r.text
    return r.json()


def test_index_search_restart_and_concurrency(
    service: LocalService, client: httpx.Client, faces_dir: Path, t1_bytes: bytes,
    astronaut_bytes: bytes,
) -> None:  # fmt: skip
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").json()["checks"] == {"models": True, "database": True}
    r = client.post("/v1/collections", json={"name": "album"})
    assert r.status_code == 201, r.text
    assert r.json()["model_version"] == "dlib-r29:1"

    r = client.post(
        "/v1/collections/album/faces",
        files={"image": ("t1.jpg", t1_bytes)},
        data={"external_image_id": "t1"},
    )
    assert r.status_code == 200, r.text
    assert len(r.json()["indexed"]) == 6

    face_of: dict[str, str] = {}
    for person, (enrol, _) in PEOPLE.items():
        r = client.post(
            "/v1/collections/album/faces",
            files={"image": ("p.jpg", _photo(faces_dir, enrol, 0))},
            data={"external_image_id": person, "max_faces": "1"},
        )
        assert r.status_code == 200, r.text
        (face,) = r.json()["indexed"]
        face_of[person] = face["face_id"]

    def check_everyone_found() -> None:
        for person, (_, query) in PEOPLE.items():
            result = _search(client, "album", _photo(faces_dir, query, 1))
            assert result["matches"], f"{person}: no match"
            best = result["matches"][0]
            assert best["face"]["face_id"] == face_of[person], person
            assert best["similarity"] >= thresholds.SEARCH
        assert _search(client, "album", astronaut_bytes)["matches"] == []

    check_everyone_found()
    assert client.get("/v1/collections/album").json()["face_count"] == 6 + len(PEOPLE)

    # 20 concurrent searches all succeed.
    query = _photo(faces_dir, PEOPLE["obama"][1])
    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(lambda _: _search(client, "album", query), range(20)))
    assert all(r["matches"][0]["face"]["face_id"] == face_of["obama"] for r in results)

    # Restart everything (Ray, Serve, PostgreSQL): what was indexed is still found.
    service.stop()
    service.start()
    check_everyone_found()


def _png_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")


def test_bad_images_get_their_4xx(client: httpx.Client, t1_bytes: bytes) -> None:
    import numpy as np

    from tests.conftest import png_bytes

    cases = {
        "truncated jpeg": (t1_bytes[: len(t1_bytes) // 2], 400),
        "text file": (b"just some text, not an image", 400),
        "1x1 png": (png_bytes(np.zeros((1, 1, 3), np.uint8)), 400),
        "30000x30000 header": (_png_claiming(30000, 30000), 413),
    }
    for name, (data, status) in cases.items():
        r = client.post("/v1/detect", files={"image": ("x", data)})
        assert r.status_code == status, (name, r.text)
        assert set(r.json()["error"]) == {"code", "message"}, name
        r = client.post("/v1/detect", json={"image": base64.b64encode(data).decode()})
        assert r.status_code == status, (name, r.text)
    r = client.post("/v1/collections/nope/search", files={"image": ("t1.jpg", t1_bytes)})
    assert r.status_code == 404


def test_clustering_plans_in_a_ray_task(client: httpx.Client, faces_dir: Path) -> None:
    """Through Serve, a clustering run plans in a Ray task of its own (large collections'
    memory and CPU stay out of the ingress) and groups real people without mixing them."""
    import time

    identities = {"person_01": "deepface/person_01", "person_02": "deepface/person_03"}
    assert client.post("/v1/collections", json={"name": "grouped"}).status_code == 201
    truth: dict[str, str] = {}
    for identity, rel in identities.items():
        for path in sorted((faces_dir / "people" / rel).glob("img[0-9].jpg"))[:4]:
            r = client.post(
                "/v1/collections/grouped/faces",
                files={"image": (path.name, path.read_bytes())},
                data={"max_faces": "1"},
            )
            assert r.status_code == 200, r.text
            truth.update({f["face_id"]: identity for f in r.json()["indexed"]})
    assert len(truth) >= 6
    r = client.post("/v1/collections/grouped/clusters", json={"mode": "full"})
    assert r.status_code == 202, r.text
    run_id = r.json()["run_id"]
    deadline = time.monotonic() + 120
    while (run := client.get(f"/v1/collections/grouped/clusters/{run_id}").json())[
        "state"
    ] == "running":
        assert time.monotonic() < deadline, run
        time.sleep(0.5)
    assert run["state"] == "succeeded", run
    assert run["result"]["planned_on"] == "ray"
    assert run["result"]["persons_created"] == len(identities)
    members: dict[str, set[str]] = {}
    for face in client.get("/v1/collections/grouped/faces", params={"limit": 100}).json()["faces"]:
        if face["person_id"]:
            members.setdefault(face["person_id"], set()).add(truth[face["face_id"]])
    assert len(members) == len(identities)
    assert all(len(ids) == 1 for ids in members.values()), members
