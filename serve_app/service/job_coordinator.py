"""The album jobs' coordinator: lists sources, sizes the worker pool to the queue, notices
dead and hung workers, and finishes jobs. One runs per service (the Jobs deployment, or the
CLI's `--local`); it holds no state that PostgreSQL does not, so a restarted one carries on.
"""

from __future__ import annotations

import logging
import math
import threading
import uuid
from pathlib import Path
from typing import Any, Protocol

from serve_app.config import Settings
from serve_app.errors import FaceserveError
from serve_app.service.album_indexing import open_source
from serve_app.service.album_sources import external_image_id_for
from serve_app.store.jobs import JobRecord, JobStore, NewJobImage

log = logging.getLogger(__name__)


def workers_wanted(depth: int, settings: Settings) -> int:
    """Workers for a queue `depth` images deep: one per job_images_per_worker, within the
    configured bounds."""
    low, high = max(0, settings.job_min_workers), max(0, settings.job_max_workers)
    if depth <= 0:
        return min(low, high)
    return max(low, min(high, math.ceil(depth / max(1, settings.job_images_per_worker))))


class WorkerPool(Protocol):
    """Where workers run (Ray actors in the service, threads in the CLI)."""

    def start(self, name: str) -> None: ...

    def stop(self, name: str) -> None:
        """Ask it to finish its group and leave."""
        ...

    def kill(self, name: str) -> None:
        """End it now (it hangs)."""
        ...

    def finished(self) -> dict[str, BaseException | None]:
        """Workers that ended since the last call, with the error that ended them."""
        ...

    def names(self) -> list[str]: ...


class JobCoordinator:
    def __init__(
        self, jobs: JobStore, settings: Settings, pool: WorkerPool, transport: Any
    ) -> None:
        self.jobs = jobs
        self.settings = settings
        self.pool = pool
        self.transport = transport
        self.incarnation = uuid.uuid4().hex[:8]
        self._count = 0
        self._listing: dict[str, threading.Thread] = {}
        self._stopping: set[str] = set()

    def recover(self) -> int:
        """At start: images leased by workers of an earlier coordinator (dead now, with it)
        go back to pending."""
        released = self.jobs.release_all_but(self.pool.names())
        if released:
            log.warning("album jobs: %d images of stopped workers are queued again", released)
        return released

    # -- one round ------------------------------------------------------------------------

    def tick(self) -> None:
        """List what needs listing, send what needs sending, size the pool, finish jobs."""
        self._list_sources()
        self.transport.send_pending()
        self.transport.collect_dead_letters()
        self._reap()
        self._kill_hung()
        self._scale(self.jobs.queue_depth())
        for job_id, options in self.jobs.complete_finished_jobs():
            log.info("album job %s finished", job_id)
            if options.get("archive_path"):  # an upload is kept only while its job needs it
                Path(options["archive_path"]).unlink(missing_ok=True)

    def _reap(self) -> None:
        for name, error in self.pool.finished().items():
            self._stopping.discard(name)
            released = self.jobs.release_worker(name)
            if error is not None:
                log.warning(
                    "album worker %s died (%s); %d images queued again", name, error, released
                )

    def _kill_hung(self) -> None:
        ours = set(self.pool.names())
        for name, count in self.jobs.expired_leases().items():
            if name in ours:
                log.warning(
                    "album worker %s holds %d images past their timeout: killed", name, count
                )
                self.pool.kill(name)

    def _scale(self, depth: int) -> None:
        wanted = workers_wanted(depth, self.settings)
        running = [n for n in self.pool.names() if n not in self._stopping]
        for _ in range(wanted - len(running)):
            self._count += 1
            name = f"w-{self.incarnation}-{self._count}"
            try:
                self.pool.start(name)
            except Exception:  # noqa: BLE001 - e.g. no resources now; tried next round
                log.exception("album jobs: cannot start worker %s", name)
                return
        for name in running[wanted:] if wanted < len(running) else []:
            self._stopping.add(name)
            self.pool.stop(name)

    # -- listing --------------------------------------------------------------------------

    def _list_sources(self) -> None:
        for job_id in [j for j, t in self._listing.items() if not t.is_alive()]:
            del self._listing[job_id]
        for job in self.jobs.jobs_to_list():
            if job.job_id not in self._listing:
                thread = threading.Thread(
                    target=self.list_source, args=(job,), name=f"list-{job.job_id[:8]}", daemon=True
                )
                self._listing[job.job_id] = thread
                thread.start()

    def list_source(self, job: JobRecord) -> None:
        """Queue every image of the job's source (again after a restart: known keys are
        kept as they are), then mark it listed; a source that cannot be read fails the job."""
        try:
            self.jobs.start_listing(job.job_id)
            source = open_source(job.source, job.source_kind, job.options, self.settings)
            ignored = 0
            for page in source.pages():
                ignored += page.ignored
                self.jobs.add_images(
                    job.job_id, [NewJobImage(k, external_image_id_for(k)) for k in page.keys]
                )
            self.jobs.finish_listing(job.job_id, ignored)
        except FaceserveError as err:
            log.warning("album job %s failed: %s", job.job_id, err.message)
            self.jobs.fail_job(job.job_id, err.message)
        except Exception as err:  # noqa: BLE001 - the job fails, the coordinator goes on
            log.exception("album job %s: listing its source failed", job.job_id)
            self.jobs.fail_job(job.job_id, f"cannot list the source: {type(err).__name__}")

    def run(self, stop: threading.Event, interval_s: float = 0.5, idle_s: float = 2.0) -> None:
        """Rounds until `stop` is set, every `interval_s` while there is work (workers or
        sources to list), every `idle_s` otherwise; a failing round (database down) is
        retried."""
        while not stop.is_set():
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - the loop must outlive an outage
                log.exception("album jobs: coordinator round failed")
                stop.wait(2.0)
            busy = bool(self.pool.names() or self._listing)
            stop.wait(interval_s if busy else max(interval_s, idle_s))
        for name in self.pool.names():
            self.pool.stop(name)


class ThreadWorkerPool:
    """Workers as threads of this process (`faceserve index --local`, tests): each gets its
    own indexer from `make_loop(name)`."""

    def __init__(self, make_loop: Any) -> None:
        self._make_loop = make_loop
        self._workers: dict[str, tuple[threading.Thread, threading.Event]] = {}
        self._errors: dict[str, BaseException | None] = {}

    def start(self, name: str) -> None:
        loop = self._make_loop(name)
        stop = threading.Event()

        def work() -> None:
            try:
                loop.run(stop)
                self._errors[name] = None
            except BaseException as err:  # noqa: BLE001 - reported as the worker's death
                self._errors[name] = err

        thread = threading.Thread(target=work, name=name, daemon=True)
        self._workers[name] = (thread, stop)
        thread.start()

    def stop(self, name: str) -> None:
        if name in self._workers:
            self._workers[name][1].set()

    def kill(self, name: str) -> None:
        self.stop(name)  # a thread cannot be killed; it stops after its group

    def finished(self) -> dict[str, BaseException | None]:
        ended = {}
        for name, (thread, _) in list(self._workers.items()):
            if not thread.is_alive():
                ended[name] = self._errors.pop(name, None)
                del self._workers[name]
        return ended

    def names(self) -> list[str]:
        return list(self._workers)

    def join(self, timeout: float | None = None) -> None:
        for thread, _ in list(self._workers.values()):
            thread.join(timeout)
