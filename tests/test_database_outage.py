"""PostgreSQL going away for a moment is a 503 with Retry-After, never a 500, and the service
answers again by itself once the database is back."""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from serve_app.api import build_rest_app
from serve_app.service.ports import LocalPipeline, LocalStorage
from serve_app.service.services import Services
from serve_app.store import EmbeddedPostgres, Store
from serve_app.vision.packs.dlib_r29 import DlibR29Pack


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server() -> Iterator[EmbeddedPostgres]:
    # Its own server, not the shared one: these tests stop and restart it mid-request.
    # Outside pytest's basetemp: the server runs as another OS user (see tests/conftest.py).
    with tempfile.TemporaryDirectory(prefix="faceserve-outage-tests-") as directory:
        pg = EmbeddedPostgres(Path(directory), port=_free_port())  # same port after a restart
        pg.start()
        yield pg
        pg.stop()


def test_a_database_outage_is_a_503_to_retry_and_passes_by_itself(
    server: EmbeddedPostgres, pack: DlibR29Pack
) -> None:
    from starlette.testclient import TestClient

    store = Store.open(server.url)
    service = Services.build(LocalStorage(store), {pack.name: LocalPipeline(pack)}, pack.name)
    with TestClient(build_rest_app(service), raise_server_exceptions=False) as client:
        assert client.post("/v1/collections", json={"name": "album"}).status_code == 201

        server.stop()
        for method, path in [("GET", "/v1/collections"), ("GET", "/v1/collections/album")]:
            r = client.request(method, path)
            assert r.status_code == 503, (path, r.text)
            assert r.headers["Retry-After"] == "2"
            assert r.json()["error"]["code"] == "database_unavailable"
            assert "retry" in r.json()["error"]["message"]

        server.start()
        r = client.get("/v1/collections/album")
        assert r.status_code == 200, r.text
        assert r.json()["name"] == "album"
    store.close()
