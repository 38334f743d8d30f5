"""Two guards around an embedded PostgreSQL.

- `python -m serve_app.store.watchdog [--detach] OWNER_PID DATA_DIR`: a process that stops the
  server in DATA_DIR once process OWNER_PID has exited (see
  `EmbeddedPostgres.stop_when_process_exits`); `--detach` forks it away from its parent.
- `ServerSupervisor`: a thread in the owner that restarts the server when it dies (crash,
  SIGKILL, OOM killer), on the same port, so the service recovers by itself.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from pathlib import Path

import psutil

from serve_app.store.embedded import EmbeddedPostgres

log = logging.getLogger(__name__)

POLL_S = 1.0


def owner_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def stopped_cleanly(server: EmbeddedPostgres) -> bool:
    """No server, and no postmaster.pid: a clean stop removes it, a crash leaves it behind."""
    return not server.is_running() and not (server.pgdata / "postmaster.pid").exists()


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--detach":
        argv = argv[1:]
        if os.fork() > 0:  # the parent returns at once; the child, an orphan, keeps watching
            os._exit(0)
    owner, data_dir = int(argv[0]), Path(argv[1])
    server = EmbeddedPostgres(data_dir)
    stopped_polls = 0
    while owner_alive(owner):
        # A crashed server is restarted by its owner's supervisor: keep guarding it. Two polls
        # in a row, so the moment between a restart's clean-up and its launch doesn't count.
        stopped_polls = stopped_polls + 1 if stopped_cleanly(server) else 0
        if stopped_polls >= 2:  # stopped by its owner: nothing left to guard
            return 0
        time.sleep(POLL_S)
    server.stop_running()
    return 0


class ServerSupervisor:
    """Restarts `server` whenever it is found dead, until `stop()`.

    `EmbeddedPostgres.restart_if_dead` does the work under the server's lock, so a deliberate
    `server.stop()` is never undone. Clients keep their URLs (same port, same password);
    pooled connections are re-established by the engines' pre-ping.
    """

    def __init__(self, server: EmbeddedPostgres, poll_s: float = 0.5) -> None:
        self.server = server
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="embedded-postgres-supervisor", daemon=True
        )

    def start(self) -> None:
        """Start watching (in a daemon thread)."""
        self._thread.start()

    def stop(self) -> None:
        """Stop watching; the server itself is left as it is."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=60)

    @property
    def restarts(self) -> int:
        """How many times the server has been restarted."""
        return self.server.restarts

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.server.restart_if_dead()
            except Exception:  # noqa: BLE001 - keep supervising; the next poll tries again
                log.exception("restarting the embedded PostgreSQL failed; retrying")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
