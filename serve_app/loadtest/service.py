"""The service a load test starts for itself: `faceserve serve`'s start/stop, in this process
(so fault scenarios reach its Ray cluster), on a free port, with a throw-away data dir."""

from __future__ import annotations

import shutil
import socket
import tempfile
from pathlib import Path

from serve_app.config import Settings


class LocalService:
    """Ray Serve + the embedded PostgreSQL (unless FACESERVE_DATABASE_URL is set)."""

    def __init__(self, serve_config: Path | None = None, num_cpus: int | None = None) -> None:
        from serve_app.app import SERVE_CONFIG

        self.serve_config = serve_config or SERVE_CONFIG
        self.num_cpus = num_cpus
        self.data_dir: Path | None = None

    def start(self) -> str:
        """Start everything; returns the base URL once the app is deployed."""
        from serve_app.server import start_local

        # Not under a pytest tmp dir or similar 0700 tree: as root, PostgreSQL runs as
        # another OS user who must reach it (EmbeddedPostgres makes the parents traversable).
        self.data_dir = Path(tempfile.mkdtemp(prefix="faceserve-loadtest-data-"))
        # Authentication off (an explicit, logged opt-out): the locust users send no key, and
        # a load test measures the pipeline, not one client's rate limit.
        settings = Settings.from_env(
            data_dir=self.data_dir, host="127.0.0.1", port=_free_port(), auth="disabled"
        )
        start_local(settings, self.serve_config, self.num_cpus)
        return f"http://{settings.host}:{settings.port}"

    def stop(self) -> None:
        """Stop Serve, the database and Ray; remove the data dir."""
        from serve_app.server import stop_local

        try:
            stop_local()
        finally:
            if self.data_dir is not None:
                shutil.rmtree(self.data_dir, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
