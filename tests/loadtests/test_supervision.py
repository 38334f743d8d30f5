"""The embedded PostgreSQL comes back by itself when it dies, with every committed face."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from serve_app.store import EmbeddedPostgres, NewImage, Store
from serve_app.store.watchdog import ServerSupervisor
from tests.store.conftest import new_face, unit_vectors


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Not under pytest's basetemp: as root the server runs as another OS user (see
    # tests/store/conftest.py).
    with tempfile.TemporaryDirectory(prefix="faceserve-supervision-") as directory:
        yield Path(directory)


def _wait(condition, timeout_s: float = 30.0) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def _kill_postmaster(server: EmbeddedPostgres) -> int:
    pid = server.server_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    return pid


def test_supervisor_restarts_a_killed_server_on_its_port_with_its_data(data_dir: Path) -> None:
    # Its own server, not the shared one: this test kills it (as the other one stops it).
    server = EmbeddedPostgres(data_dir)
    url = server.start()
    port = server.port
    store = Store.open(url)  # a service's pool, open across the crash
    supervisor = ServerSupervisor(server, poll_s=0.2)
    supervisor.start()
    try:
        store.create_collection("kept", "test-model", 8)
        vectors = unit_vectors(np.random.default_rng(7), 3)
        faces = store.add_faces("kept", NewImage("a.jpg", 10, 10), [new_face(v) for v in vectors])

        killed = _kill_postmaster(server)
        assert _wait(lambda: supervisor.restarts == 1), "not restarted"
        assert server.server_pid() not in (None, killed)
        assert server.port == port and server.url == url  # clients' URLs stay valid
        # The pool reconnects by itself (pre-ping); every committed face is there.
        assert _wait(store.ping)
        listed, _ = store.list_faces("kept")
        assert [f.face_id for f in listed] == [f.face_id for f in faces]
        best, score = store.search("kept", vectors[1], 1, 0.5)[0]
        assert best.face_id == faces[1].face_id and score == pytest.approx(1.0, abs=1e-6)
    finally:
        store.close()
        supervisor.stop()
        server.stop()
    # Stopped on purpose: it stays stopped.
    assert not server.restart_if_dead()
    assert not server.is_running()


def test_a_stopped_server_is_not_restarted_and_its_watchdog_leaves(data_dir: Path) -> None:
    server = EmbeddedPostgres(data_dir)
    server.start()
    supervisor = ServerSupervisor(server, poll_s=0.1)
    supervisor.start()
    owner = subprocess.Popen(["sleep", "120"])
    watchdog = subprocess.Popen(
        [sys.executable, "-m", "serve_app.store.watchdog", str(owner.pid), str(data_dir)]
    )
    try:
        server.stop()
        time.sleep(0.5)
        assert not server.is_running() and supervisor.restarts == 0
        assert watchdog.wait(timeout=30) == 0  # a clean stop: nothing left to guard
    finally:
        owner.kill()
        watchdog.kill()
        supervisor.stop()
        server.stop()


def test_watchdog_keeps_guarding_a_crashed_server_until_its_owner_dies(data_dir: Path) -> None:
    """A crash is not a clean stop: the watchdog must still stop the restarted server once
    the owner (the database actor) is gone, or it would hold the data directory."""
    server = EmbeddedPostgres(data_dir)
    server.start()
    owner = subprocess.Popen(["sleep", "120"])
    watchdog = subprocess.Popen(
        [sys.executable, "-m", "serve_app.store.watchdog", str(owner.pid), str(data_dir)]
    )
    try:
        _kill_postmaster(server)
        assert _wait(lambda: not server.is_running())
        time.sleep(2.5)  # a few of the watchdog's polls with the server down
        assert watchdog.poll() is None, "the watchdog took a crash for a clean stop"
        assert server.restart_if_dead()
        owner.kill()
        owner.wait()
        assert watchdog.wait(timeout=60) == 0
        assert not server.is_running()  # stopped by the watchdog
    finally:
        owner.kill()
        watchdog.kill()
        server.stop()


def test_the_watchdog_is_not_a_child_of_its_owner(data_dir: Path) -> None:
    """Ray kills an exiting worker's direct children: a watchdog that was one would die with
    the database actor, the moment it is needed, and leave the server running."""
    import psutil

    server = EmbeddedPostgres(data_dir)
    server.start()
    try:
        server.stop_when_process_exits(os.getpid())
        watchdogs = [
            p
            for p in psutil.process_iter(["cmdline"])
            if "serve_app.store.watchdog" in (p.info["cmdline"] or [])
            and str(data_dir.resolve()) in (p.info["cmdline"] or [])
        ]
        assert len(watchdogs) == 1
        assert watchdogs[0].ppid() != os.getpid()
        assert os.getpid() not in [p.pid for p in watchdogs[0].parents()]
    finally:
        server.stop()
    watchdogs[0].wait(timeout=30)  # stopped cleanly: it leaves (not our child: no status)
    assert not watchdogs[0].is_running()
