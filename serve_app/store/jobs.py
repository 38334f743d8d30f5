"""Album jobs in PostgreSQL: the job, and one row per image of its source.

The rows are the durable queue and its record at once. A worker *claims* pending rows with
`FOR UPDATE SKIP LOCKED` and a lease (claims by several workers never overlap), and each
image is *committed* in one transaction that locks its row, checks that it was not done
already (a second delivery, a re-run, an expired lease now taken by another worker) and,
when the job asks, that the collection does not hold the same image yet, then writes the
image, its faces, their vectors and the row's new state together. So an image is indexed
exactly once, whatever crashes and however often it is delivered; a worker that dies only
leaves leases that expire and are claimed again.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, func, insert, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from serve_app.errors import InvalidParameter, NotFound
from serve_app.store.collection_schema import tables_for
from serve_app.store.control import collections, job_images, jobs
from serve_app.store.records import NewFace, NewImage
from serve_app.store.store import Store

# A job's states; the last three are final.
JOB_STATES = ("queued", "running", "paused", "succeeded", "failed", "cancelled")
FINAL_STATES = ("succeeded", "failed", "cancelled")
# An image's states ("running": leased by a worker).
IMAGE_STATES = ("pending", "running", "done", "skipped", "failed")
SKIP_EXISTING = ("hash", "external_image_id", "none")
# Progress rates are taken over this recent window (seconds).
RATE_WINDOW_S = 30.0


@dataclass(frozen=True)
class ImageCounts:
    total: int = 0
    done: int = 0
    skipped: int = 0
    failed: int = 0
    pending: int = 0  # includes images being processed right now


@dataclass(frozen=True)
class JobRecord:
    job_id: str
    collection: str
    source: str
    source_kind: str
    options: dict[str, Any]
    state: str
    error: str | None
    listed: bool
    ignored_files: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    images: ImageCounts = field(default_factory=ImageCounts)
    faces_indexed: int = 0
    images_per_second: float | None = None
    eta_seconds: float | None = None


@dataclass(frozen=True)
class ClaimedImage:
    """One image leased to a worker, with what it needs to process it."""

    row_id: int
    job_id: str
    key: str
    external_image_id: str
    attempts: int
    collection: str
    source: str
    source_kind: str
    options: dict[str, Any]


@dataclass(frozen=True)
class ImageFailure:
    row_id: int
    key: str
    external_image_id: str
    reason: str
    message: str
    attempts: int
    finished_at: datetime | None


@dataclass(frozen=True)
class NewJobImage:
    key: str
    external_image_id: str


def _record(row: Any, counts: ImageCounts, faces: int, rate: float | None) -> JobRecord:
    eta = None
    if rate and row.state in ("running", "queued"):
        eta = counts.pending / rate
    elif row.state == "succeeded":
        eta = 0.0
    return JobRecord(
        job_id=str(row.id),
        collection=row.collection_name,
        source=row.source,
        source_kind=row.source_kind,
        options=dict(row.options),
        state=row.state,
        error=row.error,
        listed=bool(row.listed),
        ignored_files=int(row.ignored_files),
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        images=counts,
        faces_indexed=faces,
        images_per_second=rate,
        eta_seconds=eta,
    )


def _job_id(value: str) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise NotFound(f"job {value!r} not found") from None


def _no_flush_wait(conn: Connection) -> None:
    """This transaction does not wait for its WAL flush. Safe for a job's own writes: an
    image's faces and its row's `done` commit together, so a database crash that loses the
    last ~0.2 s of commits loses both, and the image is simply done again, never twice."""
    conn.execute(text("SET LOCAL synchronous_commit = off"))


class JobStore:
    """Jobs and their images, over a `Store` (whose engine and collections it shares)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.engine = store.engine

    # -- jobs -----------------------------------------------------------------------------

    def create_job(
        self, collection_name: str, source: str, source_kind: str, options: dict[str, Any]
    ) -> JobRecord:
        """A queued job in an existing collection (NotFound without one)."""
        job_id = str(uuid.uuid4())
        with self.engine.begin() as conn:
            collection = self.store.access.collection(conn, collection_name, lock="key_share")
            conn.execute(
                insert(jobs).values(
                    id=job_id,
                    collection_id=collection.id,
                    collection_name=collection.name,
                    source=source,
                    source_kind=source_kind,
                    options=options,
                    state="queued",
                )
            )
        return self.get_job(job_id)

    def get_job(self, job_id: str) -> JobRecord:
        job_id = _job_id(job_id)
        with self.engine.begin() as conn:
            row = conn.execute(select(jobs).where(jobs.c.id == job_id)).first()
            if row is None:
                raise NotFound(f"job {job_id} not found")
            return self._with_progress(conn, row)

    def _with_progress(self, conn: Connection, row: Any) -> JobRecord:
        by_state = dict(
            conn.execute(
                select(job_images.c.state, func.count())
                .where(job_images.c.job_id == row.id)
                .group_by(job_images.c.state)
            ).all()
        )
        counts = ImageCounts(
            total=sum(by_state.values()),
            done=by_state.get("done", 0),
            skipped=by_state.get("skipped", 0),
            failed=by_state.get("failed", 0),
            pending=by_state.get("pending", 0) + by_state.get("running", 0),
        )
        faces, recent, first = conn.execute(
            select(
                func.coalesce(func.sum(job_images.c.faces), 0),
                func.count().filter(
                    job_images.c.finished_at > func.now() - text(f"interval '{RATE_WINDOW_S} s'")
                ),
                func.min(job_images.c.finished_at).filter(
                    job_images.c.finished_at > func.now() - text(f"interval '{RATE_WINDOW_S} s'")
                ),
            ).where(job_images.c.job_id == row.id, job_images.c.finished_at.is_not(None))
        ).one()
        rate = None
        if row.state in FINAL_STATES and row.started_at and row.finished_at:
            seconds = (row.finished_at - row.started_at).total_seconds()
            processed = counts.done + counts.skipped + counts.failed
            rate = processed / seconds if seconds > 0 else None
        elif recent and first is not None:
            now = conn.execute(select(func.now())).scalar_one()
            # Over the window, or since the first image of it finished when that is shorter.
            span = max(1.0, min(RATE_WINDOW_S, (now - first).total_seconds()))
            rate = recent / span
        return _record(row, counts, int(faces), rate)

    def list_jobs(
        self,
        collection: str | None = None,
        state: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
        within: Sequence[str] | None = None,
    ) -> tuple[list[JobRecord], str | None]:
        """Newest first (only of the collections `within`, when given); the cursor is the
        last job's id."""
        query = select(jobs).order_by(jobs.c.created_at.desc(), jobs.c.id.desc())
        if collection is not None:
            query = query.where(jobs.c.collection_name == collection)
        if state is not None:
            query = query.where(jobs.c.state == state)
        if within is not None:
            query = query.where(jobs.c.collection_name.in_(list(within)))
        with self.engine.begin() as conn:
            if cursor is not None:
                after = conn.execute(
                    select(jobs.c.created_at, jobs.c.id).where(jobs.c.id == _cursor_id(cursor))
                ).first()
                if after is None:
                    raise InvalidParameter("cursor is not a page of this listing")
                query = query.where(
                    or_(
                        jobs.c.created_at < after.created_at,
                        and_(jobs.c.created_at == after.created_at, jobs.c.id < after.id),
                    )
                )
            rows = conn.execute(query.limit(limit + 1)).all()
            records = [self._with_progress(conn, row) for row in rows[:limit]]
        following = records[-1].job_id if len(rows) > limit else None
        return records, following

    def set_state(self, job_id: str, state: str, *, allowed_from: Sequence[str]) -> JobRecord:
        """Move the job to `state` if it is in one of `allowed_from`; InvalidParameter naming
        its state otherwise."""
        job_id = _job_id(job_id)
        values: dict[str, Any] = {"state": state}
        if state in FINAL_STATES:
            values["finished_at"] = func.now()
        with self.engine.begin() as conn:
            current = conn.execute(
                select(jobs.c.state).where(jobs.c.id == job_id).with_for_update()
            ).scalar_one_or_none()
            if current is None:
                raise NotFound(f"job {job_id} not found")
            if current not in allowed_from:
                raise InvalidParameter(f"job {job_id} is {current}: it cannot become {state}")
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(**values))
        return self.get_job(job_id)

    def fail_job(self, job_id: str, error: str) -> None:
        """The job itself failed (its source cannot be read): final, with the reason."""
        with self.engine.begin() as conn:
            conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.state.not_in(FINAL_STATES))
                .values(state="failed", error=error[:2000], finished_at=func.now())
            )

    def start_listing(self, job_id: str) -> None:
        """A queued job becomes running (started now) as its listing begins."""
        with self.engine.begin() as conn:
            conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.state == "queued")
                .values(state="running", started_at=func.now())
            )

    def add_images(self, job_id: str, images: Sequence[NewJobImage]) -> int:
        """Queue images of the job (a key already queued is left as it is); returns how many
        were new."""
        if not images:
            return 0
        with self.engine.begin() as conn:
            result = conn.execute(
                pg_insert(job_images)
                .values(
                    [
                        {"job_id": job_id, "key": i.key, "external_image_id": i.external_image_id}
                        for i in images
                    ]
                )
                .on_conflict_do_nothing(constraint="job_images_job_key")
                .returning(job_images.c.id)
            )
            return len(result.all())

    def finish_listing(self, job_id: str, ignored_files: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id)
                .values(listed=True, ignored_files=ignored_files)
            )

    def jobs_to_list(self) -> list[JobRecord]:
        """Jobs whose source is not fully listed yet and that may go on (oldest first)."""
        with self.engine.begin() as conn:
            rows = conn.execute(
                select(jobs)
                .where(jobs.c.listed.is_(False), jobs.c.state.in_(("queued", "running", "paused")))
                .order_by(jobs.c.created_at)
            ).all()
            return [_record(row, ImageCounts(), 0, None) for row in rows]

    def complete_finished_jobs(self) -> list[tuple[str, dict[str, Any]]]:
        """Running jobs that are listed and have no image left to do become succeeded;
        returns their ids and options."""
        with self.engine.begin() as conn:
            open_images = (
                select(job_images.c.id)
                .where(
                    job_images.c.job_id == jobs.c.id,
                    job_images.c.state.in_(("pending", "running")),
                )
                .exists()
            )
            rows = conn.execute(
                update(jobs)
                .where(jobs.c.state == "running", jobs.c.listed.is_(True), ~open_images)
                .values(state="succeeded", finished_at=func.now())
                .returning(jobs.c.id, jobs.c.options)
            ).all()
            return [(str(r.id), dict(r.options)) for r in rows]

    def queue_depth(self) -> int:
        """Images waiting or in progress in running jobs."""
        with self.engine.begin() as conn:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(job_images.join(jobs, job_images.c.job_id == jobs.c.id))
                    .where(
                        jobs.c.state == "running",
                        job_images.c.state.in_(("pending", "running")),
                    )
                ).scalar_one()
            )

    # -- images ---------------------------------------------------------------------------

    def claim(
        self, worker: str, limit: int, timeout_s: float, max_attempts: int
    ) -> list[ClaimedImage]:
        """Lease up to `limit` images of the oldest running job with work to `worker`:
        pending ones and those whose lease expired (their worker hung). The lease is the
        job's per-image timeout (`image_timeout_s`, else `timeout_s`) for each image taken.
        An image tried before is taken alone, so a hanging image charges only itself; one
        tried `max_attempts` times fails with reason `timeout` instead."""
        claimable = or_(
            job_images.c.state == "pending",
            and_(job_images.c.state == "running", job_images.c.lease_until < func.now()),
        )
        with self.engine.begin() as conn:
            # The job first, then its rows in order: both walk job_images_job_state, so a
            # claim costs the same with 50 or 50,000 images waiting.
            job = conn.execute(
                select(jobs)
                .where(
                    jobs.c.state == "running",
                    select(job_images.c.id)
                    .where(job_images.c.job_id == jobs.c.id, claimable)
                    .exists(),
                )
                .order_by(jobs.c.created_at)
                .limit(1)
            ).first()
            if job is None:
                return []
            # Expired leases (rare: a hung worker) before the pending images.
            rows = conn.execute(
                select(job_images.c.id, job_images.c.attempts)
                .where(
                    job_images.c.job_id == job.id,
                    job_images.c.state == "running",
                    job_images.c.lease_until < func.now(),
                )
                .order_by(job_images.c.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).all()
            if len(rows) < limit:
                rows += conn.execute(
                    select(job_images.c.id, job_images.c.attempts)
                    .where(job_images.c.job_id == job.id, job_images.c.state == "pending")
                    .order_by(job_images.c.id)
                    .limit(limit - len(rows))
                    .with_for_update(skip_locked=True)
                ).all()
            if not rows:
                return []
            job_timeout = float(job.options.get("image_timeout_s") or timeout_s)
            exhausted = [r.id for r in rows if r.attempts >= max_attempts]
            if exhausted:
                conn.execute(
                    update(job_images)
                    .where(job_images.c.id.in_(exhausted))
                    .values(
                        state="failed",
                        reason="timeout",
                        message=f"not finished in {max_attempts} attempts of {job_timeout:g} s "
                        "(the image hangs or crashes its worker)",
                        leased_by=None,
                        lease_until=None,
                        finished_at=func.now(),
                    )
                )
            take = [r.id for r in rows if r.attempts < max_attempts]
            retried = [r.id for r in rows if 0 < r.attempts < max_attempts]
            if retried:
                take = retried[:1]
            if not take:
                return []
            lease = job_timeout * len(take)
            claimed = conn.execute(
                update(job_images)
                .where(job_images.c.id.in_(take))
                .values(
                    state="running",
                    attempts=job_images.c.attempts + 1,
                    leased_by=worker,
                    lease_until=func.now() + text(f"interval '{lease:.3f} s'"),
                )
                .returning(
                    job_images.c.id,
                    job_images.c.key,
                    job_images.c.external_image_id,
                    job_images.c.attempts,
                )
            ).all()
        return sorted(
            (
                ClaimedImage(
                    row_id=c.id,
                    job_id=str(job.id),
                    key=c.key,
                    external_image_id=c.external_image_id,
                    attempts=c.attempts,
                    collection=job.collection_name,
                    source=job.source,
                    source_kind=job.source_kind,
                    options=dict(job.options),
                )
                for c in claimed
            ),
            key=lambda c: c.row_id,
        )

    def claim_rows(self, row_ids: Sequence[int], worker: str) -> list[ClaimedImage]:
        """The images of these rows that still need doing, in jobs that are running (for a
        transport that delivered them, SQS): marked as this worker's, without a lease."""
        if not row_ids:
            return []
        with self.engine.begin() as conn:
            claimed = conn.execute(
                update(job_images)
                .where(
                    job_images.c.id.in_(list(row_ids)),
                    job_images.c.state.in_(("pending", "running")),
                    job_images.c.job_id.in_(select(jobs.c.id).where(jobs.c.state == "running")),
                )
                .values(state="running", attempts=job_images.c.attempts + 1, leased_by=worker)
                .returning(
                    job_images.c.id,
                    job_images.c.job_id,
                    job_images.c.key,
                    job_images.c.external_image_id,
                    job_images.c.attempts,
                )
            ).all()
            job_rows = {
                r.id: r
                for r in conn.execute(
                    select(jobs).where(jobs.c.id.in_({c.job_id for c in claimed}))
                ).all()
            }
        return [
            ClaimedImage(
                row_id=c.id,
                job_id=str(c.job_id),
                key=c.key,
                external_image_id=c.external_image_id,
                attempts=c.attempts,
                collection=job_rows[c.job_id].collection_name,
                source=job_rows[c.job_id].source,
                source_kind=job_rows[c.job_id].source_kind,
                options=dict(job_rows[c.job_id].options),
            )
            for c in sorted(claimed, key=lambda c: c.id)
        ]

    def row_states(self, row_ids: Sequence[int]) -> dict[int, tuple[str, str]]:
        """(image state, job state) of each row (for a transport deciding what to drop)."""
        with self.engine.begin() as conn:
            rows = conn.execute(
                select(job_images.c.id, job_images.c.state, jobs.c.state.label("job_state"))
                .select_from(job_images.join(jobs, job_images.c.job_id == jobs.c.id))
                .where(job_images.c.id.in_(list(row_ids)))
            ).all()
            return {r.id: (r.state, r.job_state) for r in rows}

    def release_worker(self, worker: str) -> int:
        """Images a dead or stopped worker held become pending again (the attempt stays
        counted); returns how many."""
        with self.engine.begin() as conn:
            return conn.execute(
                update(job_images)
                .where(job_images.c.leased_by == worker, job_images.c.state == "running")
                .values(state="pending", leased_by=None, lease_until=None)
            ).rowcount

    def release_all_but(self, workers: Sequence[str]) -> int:
        """At a coordinator's start: images held by workers that are not its own (from
        before a restart) become pending again."""
        with self.engine.begin() as conn:
            return conn.execute(
                update(job_images)
                .where(
                    job_images.c.state == "running",
                    or_(
                        job_images.c.leased_by.is_(None),
                        job_images.c.leased_by.not_in(list(workers) or [""]),
                    ),
                )
                .values(state="pending", leased_by=None, lease_until=None)
            ).rowcount

    def unsent(self, job_states: Sequence[str], limit: int) -> list[int]:
        """Pending images of jobs in these states not handed to a transport yet (SQS)."""
        with self.engine.begin() as conn:
            rows = conn.execute(
                select(job_images.c.id)
                .select_from(job_images.join(jobs, job_images.c.job_id == jobs.c.id))
                .where(
                    jobs.c.state.in_(list(job_states)),
                    job_images.c.state == "pending",
                    or_(job_images.c.lease_until.is_(None), job_images.c.lease_until < func.now()),
                )
                .order_by(job_images.c.id)
                .limit(limit)
            ).all()
            return [r.id for r in rows]

    def mark_sent(self, row_ids: Sequence[int], resend_after_s: float) -> None:
        """Rows handed to a transport: sent again only if still pending after this long."""
        if not row_ids:
            return
        with self.engine.begin() as conn:
            conn.execute(
                update(job_images)
                .where(job_images.c.id.in_(list(row_ids)))
                .values(lease_until=func.now() + text(f"interval '{float(resend_after_s)} s'"))
            )

    def lock_pending(self, conn: Connection, row_id: int) -> bool:
        """Lock the image's row for this transaction; whether it still needs doing (a
        duplicate delivery or an image another worker finished reads False)."""
        state = conn.execute(
            select(job_images.c.state).where(job_images.c.id == row_id).with_for_update()
        ).scalar_one_or_none()
        return state in ("pending", "running")

    def commit_image(
        self,
        claim: ClaimedImage,
        image: NewImage,
        faces: Sequence[NewFace],
        skip_existing: str,
    ) -> str:
        """Index the image's faces and mark its row done, in one transaction; or mark it
        skipped when the collection already holds it (by `skip_existing`). Returns the row's
        outcome: "done", "skipped", or "duplicate" (it was finished before: nothing written).
        """
        collection = None
        with self.engine.begin() as conn:
            _no_flush_wait(conn)
            if not self.lock_pending(conn, claim.row_id):
                return "duplicate"
            collection = self.store.access.collection(conn, claim.collection, lock="key_share")
            if self._already_indexed(conn, collection, image, skip_existing):
                self._finish(
                    conn,
                    claim.row_id,
                    "skipped",
                    reason="already_indexed",
                    message=f"the collection already holds this image (by {skip_existing})",
                    content_hash=image.content_hash,
                )
                return "skipped"
            added = self.store.insert_image(conn, collection, image, faces, read_back=False)
            self._finish(
                conn, claim.row_id, "done", faces=len(added), content_hash=image.content_hash
            )
        self.store.after_commit(collection)
        return "done"

    def indexed_among(
        self, collection: str, images: Sequence[NewImage], skip_existing: str
    ) -> set[str]:
        """Which of these images the collection already holds, as their hashes or external
        ids (by `skip_existing`): one query for a worker's group, before the work
        (`commit_image` checks again under its lock)."""
        if skip_existing == "none" or not images:
            return set()
        with self.engine.begin() as conn:
            record = self.store.access.collection(conn, collection)
            t = tables_for(record.schema_name)
            if skip_existing == "hash":
                column, values = t.images.c.content_hash, [i.content_hash for i in images]
            else:
                column, values = t.images.c.external_image_id, [i.external_image_id for i in images]
            wanted = [v for v in values if v is not None]
            found = conn.execute(select(column).where(column.in_(wanted)).distinct()).scalars()
            return set(found)

    def _already_indexed(
        self,
        conn: Connection,
        collection: Any,
        image: NewImage,
        skip_existing: str,
        *,
        lock: bool = True,
    ) -> bool:
        if skip_existing == "none":
            return False
        t = tables_for(collection.schema_name)
        if skip_existing == "hash":
            column, value = t.images.c.content_hash, image.content_hash
        else:
            column, value = t.images.c.external_image_id, image.external_image_id
        if value is None:
            return False
        if lock:
            # Two jobs (or two deliveries) with the same image: the second waits here for
            # the first to commit, then sees its row.
            conn.execute(
                text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
                {"k": f"{collection.id}:{skip_existing}:{value}"},
            )
        found = conn.execute(select(column).where(column == value).limit(1)).first()
        return found is not None

    def finish_image(
        self,
        row_id: int,
        state: str,
        *,
        reason: str | None = None,
        message: str | None = None,
        content_hash: str | None = None,
    ) -> bool:
        """Mark an image skipped or failed without indexing (False: it was finished before)."""
        with self.engine.begin() as conn:
            _no_flush_wait(conn)
            if not self.lock_pending(conn, row_id):
                return False
            self._finish(
                conn, row_id, state, reason=reason, message=message, content_hash=content_hash
            )
            return True

    @staticmethod
    def _finish(
        conn: Connection,
        row_id: int,
        state: str,
        *,
        faces: int | None = None,
        reason: str | None = None,
        message: str | None = None,
        content_hash: str | None = None,
    ) -> None:
        conn.execute(
            update(job_images)
            .where(job_images.c.id == row_id)
            .values(
                state=state,
                faces=faces,
                reason=reason,
                message=(message or "")[:2000] or None,
                content_hash=content_hash,
                leased_by=None,
                lease_until=None,
                finished_at=func.now(),
            )
        )

    def failures(
        self, job_id: str, limit: int = 100, cursor: str | None = None
    ) -> tuple[list[ImageFailure], str | None]:
        """A page of the job's failed images, in source order; the cursor is the last row."""
        job_id = _job_id(job_id)
        after = _cursor_row(cursor) if cursor else 0
        with self.engine.begin() as conn:
            if conn.execute(select(jobs.c.id).where(jobs.c.id == job_id)).first() is None:
                raise NotFound(f"job {job_id} not found")
            rows = conn.execute(
                select(job_images)
                .where(
                    job_images.c.job_id == job_id,
                    job_images.c.state == "failed",
                    job_images.c.id > after,
                )
                .order_by(job_images.c.id)
                .limit(limit + 1)
            ).all()
        page = [
            ImageFailure(
                r.id,
                r.key,
                r.external_image_id,
                r.reason or "error",
                r.message or "",
                r.attempts,
                r.finished_at,
            )
            for r in rows[:limit]
        ]
        return page, (f"f{page[-1].row_id}" if len(rows) > limit else None)

    def expired_leases(self) -> dict[str, int]:
        """Workers holding images whose lease ran out, with how many (hung or dead)."""
        with self.engine.begin() as conn:
            rows = conn.execute(
                select(job_images.c.leased_by, func.count())
                .where(job_images.c.state == "running", job_images.c.lease_until < func.now())
                .group_by(job_images.c.leased_by)
            ).all()
            return {str(r[0]): int(r[1]) for r in rows if r[0]}

    def failure_counts(self) -> dict[str, int]:
        """Failed images of all jobs by reason (for metrics)."""
        with self.engine.begin() as conn:
            rows = conn.execute(
                select(job_images.c.reason, func.count())
                .where(job_images.c.state == "failed")
                .group_by(job_images.c.reason)
            ).all()
            return {str(r[0] or "error"): int(r[1]) for r in rows}

    def finished_durations(self) -> list[tuple[str, float]]:
        """(final state, seconds from creation to finish) of every finished job."""
        with self.engine.begin() as conn:
            rows = conn.execute(
                select(jobs.c.state, jobs.c.created_at, jobs.c.finished_at).where(
                    jobs.c.finished_at.is_not(None)
                )
            ).all()
            return [(r.state, (r.finished_at - r.created_at).total_seconds()) for r in rows]

    def running_rates(self) -> dict[str, float]:
        """Images per second of each running job (recent window), by job id."""
        with self.engine.begin() as conn:
            rows = conn.execute(select(jobs).where(jobs.c.state == "running")).all()
            records = [self._with_progress(conn, row) for row in rows]
        return {r.job_id: r.images_per_second or 0.0 for r in records}

    def collection_exists(self, name: str) -> bool:
        with self.engine.begin() as conn:
            return (
                conn.execute(select(collections.c.id).where(collections.c.name == name)).first()
                is not None
            )


def _cursor_id(cursor: str) -> str:
    try:
        return str(uuid.UUID(cursor))
    except ValueError:
        raise InvalidParameter("cursor is not a page of this listing") from None


def _cursor_row(cursor: str) -> int:
    if not (cursor.startswith("f") and cursor[1:].isdigit() and len(cursor) < 20):
        raise InvalidParameter("cursor is not a page of this listing")
    return int(cursor[1:])
