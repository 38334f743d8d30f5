"""Album jobs in one process: a database of their own, the real pack, the coordinator with
thread workers, small albums made from the photos that ship in PyPI packages."""

from __future__ import annotations

import io
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageOps

from serve_app.config import Settings
from serve_app.service.album_indexing import AlbumIndexer, WorkerLoop
from serve_app.service.job_coordinator import JobCoordinator, ThreadWorkerPool
from serve_app.service.job_transport import PostgresTransport
from serve_app.store.embedded import EmbeddedPostgres
from serve_app.store.jobs import JobStore
from serve_app.store.store import Store
from tests.conftest import insightface_image, moto_server

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="session")
def job_store(postgres: EmbeddedPostgres) -> Iterator[JobStore]:
    store = Store.open(postgres.fresh_database("job_tests"))
    yield JobStore(store)
    store.close()


@pytest.fixture
def collection(job_store: JobStore, pack) -> Iterator[str]:  # noqa: ANN001
    name = f"album-{uuid.uuid4().hex[:10]}"
    job_store.store.create_collection(name, pack.model_version, 128)
    yield name
    job_store.store.delete_collection(name)


def _jpeg(image: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()


@pytest.fixture(scope="session")
def album_photos(astronaut_bytes: bytes) -> dict[str, bytes]:
    """Distinct photos with faces: t1 (group), Tom Hanks, the astronaut, and variants."""
    t1 = Image.open(insightface_image("t1.jpg"))
    hanks = Image.open(insightface_image("Tom_Hanks_54745.png"))
    astronaut = Image.open(io.BytesIO(astronaut_bytes))
    return {
        "group/t1.jpg": _jpeg(t1),
        "group/t1_mirror.jpg": _jpeg(ImageOps.mirror(t1)),
        "portraits/hanks.jpg": _jpeg(hanks),
        "portraits/astronaut.jpg": _jpeg(astronaut),
        "portraits/astronaut_small.jpg": _jpeg(astronaut.resize((384, 384))),
    }


@pytest.fixture
def job_settings(settings: Settings, tmp_path: Path) -> Settings:
    return Settings.from_env(
        **{
            **settings.model_dump(),
            "job_folder_roots": str(tmp_path),
            "job_max_workers": 1,
            "job_images_per_worker": 2,
            "embed_threads": 1,
        }
    )


class LocalJobs:
    """The coordinator running in a thread, with thread workers over one shared pack."""

    def __init__(self, jobs: JobStore, settings: Settings, pack, transport=None) -> None:  # noqa: ANN001
        self.jobs = jobs
        self.transport = transport or PostgresTransport(jobs, settings)

        def make_loop(name: str) -> WorkerLoop:
            indexer = AlbumIndexer(pack, jobs, settings)
            return WorkerLoop(name, indexer, self.transport, settings.job_batch_size, poll_s=0.1)

        self.pool = ThreadWorkerPool(make_loop)
        self.coordinator = JobCoordinator(jobs, settings, self.pool, self.transport)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self.coordinator.run, args=(self._stop, 0.1, 0.1), daemon=True
        )

    def __enter__(self) -> LocalJobs:
        self.coordinator.recover()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self.pool.join(30)

    def wait(self, job_id: str, timeout: float = 120.0):  # noqa: ANN201
        """The job once it is finished."""
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.jobs.get_job(job_id)
            if job.state in ("succeeded", "failed", "cancelled"):
                return job
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} did not finish: {self.jobs.get_job(job_id)}")


@pytest.fixture
def local_jobs(job_store: JobStore, job_settings: Settings, pack) -> Callable[..., LocalJobs]:  # noqa: ANN001
    def make(settings: Settings | None = None, transport=None) -> LocalJobs:  # noqa: ANN001
        return LocalJobs(job_store, settings or job_settings, pack, transport)

    return make


@pytest.fixture(scope="session")
def aws_endpoint() -> Iterator[str]:
    """moto's standalone server (S3 and SQS), with the AWS_* variables boto3 reads."""
    with moto_server(AWS_ENV) as url:
        yield url
