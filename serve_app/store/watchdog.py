"""`python -m serve_app.store.watchdog OWNER_PID DATA_DIR`: stop the embedded PostgreSQL in
DATA_DIR once process OWNER_PID has exited (see EmbeddedPostgres.stop_when_process_exits)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import psutil

from serve_app.store.embedded import EmbeddedPostgres

POLL_S = 1.0


def owner_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def main(argv: list[str]) -> int:
    owner, data_dir = int(argv[0]), Path(argv[1])
    server = EmbeddedPostgres(data_dir)
    while owner_alive(owner):
        if not server.is_running():  # stopped cleanly by its owner: nothing left to guard
            return 0
        time.sleep(POLL_S)
    server.stop_running()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
