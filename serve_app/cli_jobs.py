"""`faceserve index` and `faceserve jobs`: album jobs from the command line.

`index` submits a job to a running service (or runs it here with `--local`) and shows its
progress; Ctrl-C leaves a submitted job running. Exit status: 0 every image indexed or
skipped, 1 some images failed (listed), 2 the job failed or was refused, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import mimetypes
import os
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from serve_app.config import Settings
from serve_app.errors import FaceserveError, InvalidParameter

DEFAULT_URL = "http://127.0.0.1:8000"
KEY_HELP = "the API key's secret (default: $FACESERVE_KEY)"
FINAL = ("succeeded", "failed", "cancelled")
SHOWN_FAILURES = 20


class ApiError(FaceserveError):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{message} (HTTP {status} {code})")
        self.status, self.code = status, code


class Client:
    """The few REST calls the CLI makes, with the standard library only."""

    def __init__(self, url: str, key: str | None = None, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._auth = {"authorization": f"Bearer {key}"} if key else {}

    def request(
        self, method: str, path: str, body: bytes | None = None, content_type: str = ""
    ) -> Any:
        headers = {**self._auth, **({"content-type": content_type} if content_type else {})}
        req = urllib.request.Request(self.url + path, body, headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as err:
            try:
                error = json.loads(err.read())["error"]
            except (ValueError, KeyError, TypeError):
                error = {"code": "http_error", "message": str(err)}
            raise ApiError(err.code, error.get("code", ""), error.get("message", "")) from None
        except urllib.error.URLError as err:
            raise InvalidParameter(
                f"cannot reach the service at {self.url}: {err.reason}"
            ) from None

    def json(self, method: str, path: str, value: Any = None) -> Any:
        body = None if value is None else json.dumps(value).encode()
        return self.request(method, path, body, "application/json" if body else "")

    def upload(self, path: str, file: Path, fields: dict[str, Any]) -> Any:
        """A multipart POST with `file` as the part `archive`, streamed from disk."""
        boundary = uuid.uuid4().hex
        head = b"".join(
            f'--{boundary}\r\ncontent-disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
            for k, v in fields.items()
            if v is not None
        )
        kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        head += (
            f'--{boundary}\r\ncontent-disposition: form-data; name="archive"; '
            f'filename="{file.name}"\r\ncontent-type: {kind}\r\n\r\n'
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        size = len(head) + file.stat().st_size + len(tail)

        def chunks() -> Iterator[bytes]:
            yield head
            with open(file, "rb") as handle:
                while chunk := handle.read(1024 * 1024):
                    yield chunk
            yield tail

        req = urllib.request.Request(
            self.url + path,
            chunks(),  # type: ignore[arg-type]
            {
                **self._auth,
                "content-type": f"multipart/form-data; boundary={boundary}",
                "content-length": str(size),
            },
            method="POST",
        )
        try:
            with urllib.request.urlopen(req, timeout=max(self.timeout, 600)) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as err:
            error = json.loads(err.read() or b"{}").get("error", {})
            raise ApiError(err.code, error.get("code", ""), error.get("message", "")) from None

    def events(self, job_id: str) -> Iterator[dict[str, Any]]:
        """The job's progress stream (server-sent events), one job per event."""
        req = urllib.request.Request(f"{self.url}/v1/jobs/{job_id}/events", headers=self._auth)
        with urllib.request.urlopen(req, timeout=None) as response:
            data = []
            for raw in response:
                line = raw.decode().rstrip("\r\n")
                if line.startswith("data:"):
                    data.append(line[5:].strip())
                elif not line and data:
                    yield json.loads("\n".join(data))
                    data = []


def _source_and_archive(source: str) -> tuple[str | None, Path | None]:
    """A source URL, or a local archive to upload; a local folder becomes a file:// URL (the
    service must be allowed to read it: FACESERVE_JOB_FOLDER_ROOTS)."""
    if source.startswith(("s3://", "file://")):
        return source, None
    path = Path(source).expanduser()
    if path.is_file():
        return None, path
    if path.is_dir():
        return path.resolve().as_uri(), None
    raise InvalidParameter(f"{source} is not an s3:// or file:// URL, a folder or an archive")


TAR_PREFIX = "faceserve-upload-"


def _tar_of(folder: Path) -> Path:
    """An uncompressed tar of the folder's images (relative paths), in a temporary file."""
    import tarfile
    import tempfile

    from serve_app.service.album_sources import is_image_name

    handle, name = tempfile.mkstemp(prefix=TAR_PREFIX, suffix=".tar")
    os.close(handle)
    with tarfile.open(name, "w") as tar:
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(folder).as_posix()
            if path.is_file() and not path.is_symlink() and is_image_name(relative):
                tar.add(path, arcname=relative, recursive=False)
    return Path(name)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "max_faces": args.max_faces,
        "quality_filter": args.quality_filter,
        "skip_existing": args.skip_existing,
        "image_timeout_s": args.image_timeout,
    }


class Progress:
    """A tqdm bar over the job's images, with images/s and ETA from the service."""

    def __init__(self, quiet: bool) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=0, unit="img", disable=quiet, dynamic_ncols=True, file=sys.stderr)

    def update(self, job: dict[str, Any]) -> None:
        images = job["images"]
        self.bar.total = images["total"]
        self.bar.n = images["done"] + images["skipped"] + images["failed"]
        rate = job.get("images_per_second")
        eta = job.get("eta_seconds")
        self.bar.set_postfix_str(
            f"{job['state']} · {rate or 0:.1f} img/s · ETA {eta:.0f} s · "
            f"{job['faces_indexed']} faces · {images['failed']} failed"
            if eta is not None
            else f"{job['state']} · {job['faces_indexed']} faces · {images['failed']} failed",
            refresh=False,
        )
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def _report(job: dict[str, Any], failures: list[dict[str, Any]]) -> int:
    images = job["images"]
    print(
        f"job {job['job_id']} {job['state']}: {images['done']} indexed, {images['skipped']} "
        f"skipped, {images['failed']} failed, {job['faces_indexed']} faces"
        + (f" ({job['images_per_second']} images/s)" if job.get("images_per_second") else "")
    )
    if job["state"] == "failed":
        print(f"error: {job.get('error')}", file=sys.stderr)
        return 2
    for failure in failures[:SHOWN_FAILURES]:
        print(
            f"  failed: {failure['key']}: {failure['reason']}: {failure['message']}",
            file=sys.stderr,
        )
    if images["failed"] > SHOWN_FAILURES:
        print(f"  … and {images['failed'] - SHOWN_FAILURES} more", file=sys.stderr)
    return 1 if images["failed"] or job["state"] == "cancelled" else 0


def cmd_index(args: argparse.Namespace, settings: Settings) -> int:
    if args.local:
        return _index_local(args, settings)
    client = Client(args.url, args.key)
    source, archive = _source_and_archive(args.source)
    name = urllib.parse.quote(args.collection, safe="")
    try:
        client.json("GET", f"/v1/collections/{name}")
    except ApiError as err:
        if err.status != 404:
            raise
        client.json("POST", "/v1/collections", {"name": args.collection})
        print(f"created collection {args.collection}", file=sys.stderr)
    path = f"/v1/collections/{name}/jobs"
    job = None
    if archive is None:
        try:
            job = client.json("POST", path, {"source": source, **_options(args)})
        except ApiError as err:
            folder = Path(urllib.parse.urlparse(source or "").path)
            if not (source or "").startswith("file://") or not folder.is_dir() or err.status != 400:
                raise
            # The service may not read this folder itself: send it over as an archive.
            print(f"the service does not read {folder} itself; sending its images", file=sys.stderr)
            archive = _tar_of(folder)
    if job is None:
        assert archive is not None
        print(f"uploading {archive} ({archive.stat().st_size / 1e6:.1f} MB) …", file=sys.stderr)
        try:
            job = client.upload(path, archive, _options(args))
        finally:
            if archive.name.startswith(TAR_PREFIX):
                archive.unlink(missing_ok=True)
    job_id = job["job_id"]
    print(f"job {job_id} submitted", file=sys.stderr)
    progress = Progress(args.quiet)
    try:
        progress.update(job)
        for job in client.events(job_id):
            progress.update(job)
    except KeyboardInterrupt:
        progress.close()
        print(
            f"\nthe job keeps running on the service; follow it with\n"
            f"  faceserve jobs show {job_id} --url {args.url}\n"
            f"  curl {args.url}/v1/jobs/{job_id}",
            file=sys.stderr,
        )
        return 130
    progress.close()
    failures = client.json("GET", f"/v1/jobs/{job_id}/failures?limit={SHOWN_FAILURES}")["failures"]
    return _report(job, failures)


def _index_local(args: argparse.Namespace, settings: Settings) -> int:
    """The whole job in this process: embedded PostgreSQL (unless a URL is set), one worker."""
    from serve_app.api.rest.models_jobs import ImageFailureOut, JobOut
    from serve_app.errors import NotFound
    from serve_app.service.album_indexing import AlbumIndexer, WorkerLoop
    from serve_app.service.album_sources import parse_source
    from serve_app.service.job_coordinator import JobCoordinator, ThreadWorkerPool
    from serve_app.service.job_transport import PostgresTransport
    from serve_app.service.jobs import job_options
    from serve_app.store.embedded import EmbeddedPostgres
    from serve_app.store.jobs import JobStore
    from serve_app.store.store import Store
    from serve_app.vision.packs.registry import ready_pack

    source, archive = _source_and_archive(args.source)
    if source and source.startswith("file://"):  # a folder given here may be read here
        roots = ",".join(
            filter(None, [settings.job_folder_roots, urllib.parse.urlparse(source).path])
        )
        settings = Settings.from_env(**{**settings.model_dump(), "job_folder_roots": roots})
    server = None
    url = settings.database_url
    if not url:
        server = EmbeddedPostgres(settings.data_dir / "postgres")
        url = server.start()
    pack = ready_pack(settings, None, lambda message: print(message, file=sys.stderr))
    store = Store.open(url)
    try:
        jobs = JobStore(store)
        try:
            store.get_collection(args.collection, counted=False)
        except NotFound:
            store.create_collection(args.collection, pack.model_version, pack.embedding_dim)
            print(f"created collection {args.collection}", file=sys.stderr)
        options = job_options(**_options(args))
        if archive is not None:
            record = jobs.create_job(
                args.collection, f"archive:{archive.name}", "archive",
                {**options, "archive_path": str(archive.resolve())},
            )  # fmt: skip
        else:
            assert source is not None
            record = jobs.create_job(args.collection, source, parse_source(source)[0], options)
        transport = PostgresTransport(jobs, settings)

        def make_loop(name: str) -> WorkerLoop:
            return WorkerLoop(
                name, AlbumIndexer(pack, jobs, settings), transport, settings.job_batch_size
            )

        one = Settings.from_env(
            **{**settings.model_dump(), "job_min_workers": 0, "job_max_workers": 1}
        )
        coordinator = JobCoordinator(jobs, one, ThreadWorkerPool(make_loop), transport)
        coordinator.recover()
        stop = threading.Event()
        threading.Thread(target=coordinator.run, args=(stop,), daemon=True).start()
        progress = Progress(args.quiet)
        try:
            while True:
                job = JobOut.of(jobs.get_job(record.job_id)).model_dump(mode="json")
                progress.update(job)
                if job["state"] in FINAL:
                    break
                time.sleep(0.5)
        except KeyboardInterrupt:
            progress.close()
            print(
                f"\nstopped; the job is kept: run the same command again to go on "
                f"(job {record.job_id}, images already indexed are skipped)",
                file=sys.stderr,
            )
            return 130
        finally:
            stop.set()
        progress.close()
        failures = [
            ImageFailureOut.of(f).model_dump(mode="json")
            for f in jobs.failures(record.job_id, SHOWN_FAILURES)[0]
        ]
        return _report(job, failures)
    finally:
        store.close()
        if server is not None:
            server.stop()


def cmd_jobs(args: argparse.Namespace, settings: Settings) -> int:
    client = Client(args.url, args.key)
    if args.jobs_command == "list":
        query = urllib.parse.urlencode(
            {k: v for k, v in (("collection", args.collection), ("state", args.state)) if v}
        )
        page = client.json("GET", "/v1/jobs" + (f"?{query}" if query else ""))
        for job in page["jobs"]:
            i = job["images"]
            print(
                f"{job['job_id']}  {job['state']:<9}  {job['collection']:<20} "
                f"{i['done'] + i['skipped'] + i['failed']}/{i['total']}  {job['source']}"
            )
        return 0
    job_id = urllib.parse.quote(args.job_id, safe="")
    if args.jobs_command == "failures":
        page = client.json("GET", f"/v1/jobs/{job_id}/failures?limit=1000")
        for failure in page["failures"]:
            print(f"{failure['key']}\t{failure['reason']}\t{failure['message']}")
        return 0
    if args.jobs_command in ("pause", "resume", "cancel"):
        job = client.json("POST", f"/v1/jobs/{job_id}/{args.jobs_command}")
    else:
        job = client.json("GET", f"/v1/jobs/{job_id}")
    json.dump(job, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def add_parsers(sub: Any) -> None:
    """The `index` and `jobs` commands of `faceserve`."""
    p = sub.add_parser(
        "index",
        help="index an album (S3 prefix, folder or archive) as a background job",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source", help="s3://bucket/prefix, file:///folder, a folder, or a .zip/.tar")
    p.add_argument("--collection", required=True)
    p.add_argument("--url", default=DEFAULT_URL, help=f"the service (default {DEFAULT_URL})")
    p.add_argument("--local", action="store_true", help="run the job in this process instead")
    p.add_argument("--key", default=os.environ.get("FACESERVE_KEY"), help=KEY_HELP)
    p.add_argument("--max-faces", type=int)
    p.add_argument("--quality-filter")
    p.add_argument("--skip-existing", choices=["hash", "external_image_id", "none"], default="hash")
    p.add_argument("--image-timeout", type=float, help="seconds per image before a retry")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("jobs", help="list, show, pause, resume or cancel album jobs")
    p.add_argument("--url", default=DEFAULT_URL)
    p.add_argument("--key", default=os.environ.get("FACESERVE_KEY"), help=KEY_HELP)
    jsub = p.add_subparsers(dest="jobs_command", required=True)
    j = jsub.add_parser("list")
    j.add_argument("--collection")
    j.add_argument("--state")
    for name in ("show", "failures", "pause", "resume", "cancel"):
        jsub.add_parser(name).add_argument("job_id")
    p.set_defaults(func=cmd_jobs)
