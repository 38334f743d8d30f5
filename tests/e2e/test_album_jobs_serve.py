"""Album jobs through the real service (`faceserve serve` in its own process group, Ray Serve,
the Jobs deployment and its index-worker actors): REST, progress stream, CLI, and
`kill -9` of a worker and of the whole service mid-job, after which the job finishes with
every image indexed exactly once."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image, ImageOps

from serve_app.service.album_sources import external_image_id_for
from serve_app.service.analysis import detect_faces
from serve_app.service.quality_filter import QualityFilter, select_faces
from serve_app.store.embedded import EmbeddedPostgres
from tests.conftest import free_port, insightface_image

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
FACESERVE = Path(sys.executable).parent / "faceserve"
FINAL = ("succeeded", "failed", "cancelled")
ADMIN_KEY = "album-e2e-" + "a" * 40
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}


def _jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=90)
    return out.getvalue()


def make_album(root: Path, astronaut_bytes: bytes, count: int) -> dict[str, bytes]:
    """`count` distinct photos with faces (scaled and mirrored variants of the test photos)."""
    bases = [
        Image.open(insightface_image("t1.jpg")),
        Image.open(insightface_image("Tom_Hanks_54745.png")),
        Image.open(io.BytesIO(astronaut_bytes)),
    ]
    photos = {}
    for i in range(count):
        base = bases[i % len(bases)]
        scale = 1.0 - 0.04 * (i // (2 * len(bases)))
        image = base.resize((round(base.width * scale), round(base.height * scale)))
        if (i // len(bases)) % 2:
            image = ImageOps.mirror(image)
        key = f"set{i % 2}/photo_{i:03d}.jpg"
        photos[key] = _jpeg(image)
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(photos[key])
    return photos


class ServiceProcess:
    """`faceserve serve` as its own session, so `kill -9` can take all of it (Ray too)."""

    def __init__(self, env: dict[str, str], port: int) -> None:
        self.env, self.port = env, port
        self.process: subprocess.Popen | None = None
        self.ray_tmp: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 240) -> None:
        self.ray_tmp = tempfile.mkdtemp(prefix="fsr-")
        env = {**os.environ, **self.env, "RAY_TMPDIR": self.ray_tmp, "RAY_AUTH_MODE": "disabled"}
        self.process = subprocess.Popen(
            [str(FACESERVE), "serve", "--port", str(self.port)],
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "faceserve serve exited during start"
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise AssertionError("the service did not become ready")

    def kill9(self) -> None:
        """SIGKILL to the service's whole session and anything of its Ray cluster."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        subprocess.run(["pkill", "-9", "-s", str(self.process.pid)], check=False)
        subprocess.run(["pkill", "-9", "-f", str(self.ray_tmp)], check=False)
        self.process.wait(30)
        time.sleep(1)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.kill9()
        if self.ray_tmp:
            shutil.rmtree(self.ray_tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def album(astronaut_bytes: bytes) -> Iterator[tuple[Path, dict[str, bytes]]]:
    root = Path(tempfile.mkdtemp(prefix="faceserve-album-"))
    photos = make_album(root / "album", astronaut_bytes, 36)
    yield root, photos
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def service(
    postgres: EmbeddedPostgres, model_dir: Path, album: tuple[Path, dict[str, bytes]]
) -> Iterator[ServiceProcess]:
    data_dir = Path(tempfile.mkdtemp(prefix="faceserve-jobs-e2e-"))
    env = {
        "FACESERVE_DATABASE_URL": postgres.fresh_database("album_jobs_e2e"),
        "FACESERVE_DATA_DIR": str(data_dir),
        "FACESERVE_MODEL_DIR": str(model_dir),
        "FACESERVE_JOB_FOLDER_ROOTS": str(album[0]),
        "FACESERVE_JOB_MAX_WORKERS": "2",
        "FACESERVE_JOB_IMAGES_PER_WORKER": "4",
        "FACESERVE_JOB_IMAGE_TIMEOUT_S": "15",
        "FACESERVE_ADMIN_KEY": ADMIN_KEY,
    }
    svc = ServiceProcess(env, free_port())
    svc.start()
    try:
        yield svc
    finally:
        svc.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def _expected(pack, photos: dict[str, bytes]) -> dict[str, int]:  # noqa: ANN001
    level = QualityFilter.parse(None)
    return {
        external_image_id_for(key): len(
            select_faces(detect_faces(pack, data).faces, None, level)[0]
        )
        for key, data in photos.items()
    }


def _faces_per_image(client: httpx.Client, collection: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    cursor = None
    while True:
        params = {"limit": 4096, **({"cursor": cursor} if cursor else {})}
        page = client.get(f"/v1/collections/{collection}/faces", params=params).json()
        for face in page["faces"]:
            counts[face["external_image_id"]] = counts.get(face["external_image_id"], 0) + 1
        cursor = page["next_cursor"]
        if not cursor:
            return counts


def _wait(client: httpx.Client, job_id: str, until, timeout: float = 300) -> dict:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            job = client.get(f"/v1/jobs/{job_id}").json()
            if until(job):
                return job
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} never reached the expected state")


def _worker_pids() -> list[int]:
    found = subprocess.run(["pgrep", "-f", "ray::IndexWorker"], capture_output=True, text=True)
    return [int(p) for p in found.stdout.split()]


def test_job_survives_kill_9_of_a_worker_and_of_the_service(
    service: ServiceProcess,
    album: tuple[Path, dict[str, bytes]],
    pack,  # noqa: ANN001
) -> None:
    root, photos = album
    expected = _expected(pack, photos)
    with httpx.Client(base_url=service.url, timeout=60, headers=AUTH) as client:
        assert client.post("/v1/collections", json={"name": "family"}).status_code == 201
        r = client.post("/v1/collections/family/jobs", json={"source": f"file://{root}/album"})
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        assert r.json()["state"] in ("queued", "running")

        def done_at_least(n: int):  # noqa: ANN202
            return lambda j: j["images"]["done"] >= n or j["state"] in FINAL

        _wait(client, job_id, done_at_least(3))
        pids = _worker_pids()
        assert pids, "no index worker is running"
        os.kill(pids[0], signal.SIGKILL)  # a worker dies mid-job

        job = _wait(client, job_id, done_at_least(14))
        assert job["state"] == "running", "the album finished before the service was killed"
    service.kill9()  # everything dies mid-job: Ray, Serve, the coordinator, the workers
    service.start()
    with httpx.Client(base_url=service.url, timeout=60, headers=AUTH) as client:
        job = _wait(client, job_id, lambda j: j["state"] in FINAL)
        assert job["state"] == "succeeded", job
        assert job["images"] == {
            "total": len(photos), "done": len(photos), "skipped": 0, "failed": 0, "pending": 0,
        }  # fmt: skip
        # Every image exactly once: its faces counted once per external image id.
        assert _faces_per_image(client, "family") == {k: n for k, n in expected.items() if n}
        assert job["faces_indexed"] == sum(expected.values())

        # The progress stream of a finished job: one final event.
        with client.stream("GET", f"/v1/jobs/{job_id}/events") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            text = "".join(stream.iter_text())
        assert text.startswith("event: end\ndata: ")
        assert json.loads(text.split("data: ", 1)[1])["state"] == "succeeded"

        metrics = client.get("/metrics").text
        assert "faceserve_job_queue_depth 0.0" in metrics
        assert 'faceserve_job_duration_seconds_count{state="succeeded"}' in metrics


def test_archive_upload_pause_resume_cancel_and_cli(
    service: ServiceProcess, album: tuple[Path, dict[str, bytes]]
) -> None:
    root, photos = album
    buffer = io.BytesIO()
    keys = sorted(photos)[:3]
    with zipfile.ZipFile(buffer, "w") as z:
        for key in keys:
            z.writestr(key, photos[key])
        z.writestr("../../etc/evil.jpg", photos[keys[0]])
    with httpx.Client(base_url=service.url, timeout=60, headers=AUTH) as client:
        client.post("/v1/collections", json={"name": "uploads"})
        r = client.post(
            "/v1/collections/uploads/jobs",
            files={"archive": ("album.zip", buffer.getvalue(), "application/zip")},
            data={"max_faces": "2"},
        )
        assert r.status_code == 202, r.text
        job = _wait(client, r.json()["job_id"], lambda j: j["state"] in FINAL)
        assert (job["state"], job["images"]["done"], job["images"]["failed"]) == ("succeeded", 3, 1)
        failures = client.get(f"/v1/jobs/{job['job_id']}/failures").json()["failures"]
        assert [(f["key"], f["reason"]) for f in failures] == [
            ("../../etc/evil.jpg", "unsafe_path")
        ]
        assert job["faces_indexed"] <= 6  # max_faces=2 per image

        bad = client.post("/v1/collections/uploads/jobs", files={"archive": ("x.zip", b"hello")})
        assert bad.status_code == 400 and "not a .zip" in bad.json()["error"]["message"]
        outside = client.post("/v1/collections/uploads/jobs", json={"source": "file:///etc"})
        assert outside.status_code == 400
        assert "not inside an allowed root" in outside.json()["error"]["message"]
        assert (
            client.post("/v1/collections/nope/jobs", json={"source": "s3://photos/x"}).status_code
            == 404
        )
        assert client.get("/v1/jobs/not-a-job").status_code == 404

        # Pause, resume, cancel (skip_existing none: the album's images are work again).
        r = client.post(
            "/v1/collections/uploads/jobs",
            json={"source": f"file://{root}/album", "skip_existing": "none"},
        )
        job_id = r.json()["job_id"]
        paused = client.post(f"/v1/jobs/{job_id}/pause").json()
        assert paused["state"] == "paused"
        time.sleep(2)
        still = client.get(f"/v1/jobs/{job_id}").json()
        time.sleep(2)
        assert client.get(f"/v1/jobs/{job_id}").json()["images"]["done"] == still["images"]["done"]
        assert client.post(f"/v1/jobs/{job_id}/resume").json()["state"] == "running"
        _wait(client, job_id, lambda j: j["images"]["done"] >= still["images"]["done"] + 2)
        cancelled = client.post(f"/v1/jobs/{job_id}/cancel").json()
        assert cancelled["state"] == "cancelled"
        conflict = client.post(f"/v1/jobs/{job_id}/resume")
        assert conflict.status_code == 400 and "cancelled" in conflict.json()["error"]["message"]
        listed = client.get("/v1/jobs", params={"collection": "uploads", "state": "cancelled"})
        assert [j["job_id"] for j in listed.json()["jobs"]] == [job_id]

    # The CLI: a folder with one broken photo exits 1 and names it.
    cli_album = root / "cli"
    cli_album.mkdir()
    (cli_album / "a.jpg").write_bytes(photos[keys[0]])
    (cli_album / "broken.jpg").write_bytes(b"not a jpeg")
    command = [str(FACESERVE), "index", str(cli_album), "--collection", "cli", "--url", service.url]
    env = {**os.environ, "FACESERVE_KEY": ADMIN_KEY}
    run = subprocess.run(
        [*command, "--quiet"], capture_output=True, text=True, timeout=300, env=env
    )
    assert run.returncode == 1, run.stderr
    assert "1 indexed, 0 skipped, 1 failed" in run.stdout
    assert "broken.jpg: invalid_image" in run.stderr
