"""The embedded server: TCP on loopback, restarts, crashes, stale and foreign pid files.

The tests that stop, crash or watch a server start their own (the shared `postgres` fixture
must stay up for the other tests); the others use the shared one."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from serve_app.store import EmbeddedPostgres, EmbeddedPostgresError, NewImage, Store
from tests.store.conftest import new_face, unit_vectors


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fill(url: str, rng: np.random.Generator) -> tuple[list[str], np.ndarray]:
    """A collection with 5 faces, committed; returns their ids and vectors."""
    store = Store.open(url)
    try:
        store.create_collection("kept", "test-model", 8, metadata={"v": 1})
        vectors = unit_vectors(rng, 5)
        records = store.add_faces(
            "kept", NewImage("group.jpg", 100, 80), [new_face(v) for v in vectors]
        )
        return [r.face_id for r in records], vectors
    finally:
        store.close()


def assert_kept(url: str, face_ids: list[str], vectors: np.ndarray) -> None:
    store = Store.open(url)
    try:
        collection = store.get_collection("kept")
        assert (collection.face_count, collection.metadata) == (5, {"v": 1})
        page, _ = store.list_faces("kept")
        assert [f.face_id for f in page] == face_ids
        assert page[0].external_image_id == "group.jpg"
        best, score = store.search("kept", vectors[3], 1, 0.5)[0]
        assert best.face_id == face_ids[3] and score == pytest.approx(1.0, abs=1e-6)
    finally:
        store.close()


def test_stop_and_start_keeps_collections_and_faces(
    server_dirs: Path, rng: np.random.Generator
) -> None:
    server = EmbeddedPostgres(server_dirs / "restart")
    started = time.monotonic()
    url = server.start()
    first_start_s = time.monotonic() - started
    assert url.startswith("postgresql+psycopg2://faceserve:")
    assert f"@127.0.0.1:{server.port}/faceserve" in url
    assert server.start() == url  # already running: same server
    face_ids, vectors = fill(url, rng)
    server.stop()
    server.stop()  # idempotent
    with pytest.raises(EmbeddedPostgresError, match="not running"):
        _ = server.url

    port = free_port()
    with EmbeddedPostgres(server_dirs / "restart", port=port) as again:
        assert again.port == port
        assert_kept(again.url, face_ids, vectors)
    assert first_start_s < 15  # ~2 s when the machine is idle (initdb included)


def test_crash_then_start_recovers_committed_data(
    server_dirs: Path, rng: np.random.Generator
) -> None:
    port = free_port()
    server = EmbeddedPostgres(server_dirs / "crash", port=port)
    url = server.start()
    face_ids, vectors = fill(url, rng)
    store = Store.open(url)  # a service holding pooled connections while the server dies
    assert store.count_faces("kept") == 5
    pid_file = server.pgdata / "postmaster.pid"
    os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
    assert pid_file.exists()  # left behind, stale
    # The postmaster's backends notice its death a moment later: until then a pooled
    # connection may still answer.
    deadline = time.monotonic() + 15
    while store.ping() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not store.ping()

    recovered = EmbeddedPostgres(server_dirs / "crash", port=port)
    try:
        assert recovered.start() == url
        assert_kept(url, face_ids, vectors)
        assert store.count_faces("kept") == 5  # its pool reconnects by itself
    finally:
        store.close()
        recovered.stop()


def test_pid_file_naming_an_unrelated_live_process_is_stale(server_dirs: Path) -> None:
    server = EmbeddedPostgres(server_dirs / "stale")
    server.start()
    server.stop()
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        (server.pgdata / "postmaster.pid").write_text(
            f"{sleeper.pid}\n{server.pgdata}\n0\n5432\n\n127.0.0.1\n0 0\nready\n"
        )
        store = Store.open(server.start())
        assert store.ping()
        store.close()
    finally:
        sleeper.kill()
        sleeper.wait()
        server.stop()


def test_second_server_on_a_live_data_dir_is_refused(postgres: EmbeddedPostgres) -> None:
    intruder = EmbeddedPostgres(postgres.data_dir)
    with pytest.raises(EmbeddedPostgresError, match="another PostgreSQL server .* is running"):
        intruder.start()
    owner = psutil.Process(int((postgres.pgdata / "postmaster.pid").read_text().split()[0]))
    assert owner.is_running()
    store = Store.open(postgres.url)
    try:
        assert store.ping()
    finally:
        store.close()


def test_server_listens_on_loopback_tcp_only(postgres: EmbeddedPostgres) -> None:
    assert postgres.port is not None
    with socket.create_connection(("127.0.0.1", postgres.port), timeout=5):
        pass
    assert not list(postgres.pgdata.glob(".s.PGSQL.*"))  # no unix socket
    owner = psutil.Process(int((postgres.pgdata / "postmaster.pid").read_text().split()[0]))
    listening = {
        c.laddr
        for c in psutil.net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.pid == owner.pid
    }
    assert listening and all(addr.ip == "127.0.0.1" for addr in listening)


def test_watchdog_stops_the_server_when_its_owner_dies(server_dirs: Path) -> None:
    """An owner killed without cleanup (a Ray actor at cluster stop) leaves no server behind."""
    import subprocess
    import sys
    import time

    data_dir = server_dirs / "orphan"
    owner = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, sys; from pathlib import Path; "
            "from serve_app.store import EmbeddedPostgres; "
            "s = EmbeddedPostgres(Path(sys.argv[1])); s.start(); "
            "s.stop_when_process_exits(os.getpid()); os._exit(0)",
            str(data_dir),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert owner.returncode == 0, owner.stderr
    server = EmbeddedPostgres(data_dir)
    deadline = time.monotonic() + 30
    while server.is_running() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not server.is_running()
    server.start()  # the data directory is free again
    server.stop()
