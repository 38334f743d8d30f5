"""The work of an album job on its images: read, detect, embed, commit, one group at a time.

Plain Python over a model pack in this process and a `JobStore`: the Ray worker actors
(`deployments/jobs.py`) run it, and so does `faceserve index --local`. Every image ends
done, skipped or failed with a reason; nothing an image does (bad bytes, a missing file, a
decoder error) stops the worker.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from serve_app.config import ImageLimits, Settings
from serve_app.errors import (
    FaceserveError,
    ImageTooLarge,
    InvalidImage,
    NotFound,
    UnsupportedFormat,
)
from serve_app.service.album_sources import (
    AlbumSource,
    ArchiveSource,
    S3Source,
    SourceError,
    folder_source,
    parse_source,
)
from serve_app.service.analysis import ImageFaces, detect_faces
from serve_app.service.faces import new_face
from serve_app.service.quality_filter import QualityFilter, select_faces
from serve_app.store.jobs import ClaimedImage, JobStore
from serve_app.store.photo_cipher import PhotoCipher
from serve_app.store.records import NewImage
from serve_app.vision.packs.base import ModelPack

log = logging.getLogger(__name__)


def failure_reason(err: Exception) -> str:
    """The reason code of an image that failed with `err`, as listed in a job's failures."""
    if isinstance(err, SourceError):
        return err.reason
    if isinstance(err, ImageTooLarge):
        return "too_large"
    if isinstance(err, UnsupportedFormat):
        return "unsupported_format"
    if isinstance(err, InvalidImage):
        return "invalid_image"
    if isinstance(err, FaceserveError):
        return err.code
    return "internal_error"


def open_source(source: str, kind: str, options: dict[str, Any], settings: Settings) -> AlbumSource:
    """The job's source, as its worker reads it."""
    if kind == "archive":
        path = Path(str(options.get("archive_path", "")))
        if not path.is_file():
            raise NotFound(f"the job's uploaded archive {path.name} is gone")
        return ArchiveSource(path)
    scheme, first, second = parse_source(source)
    if scheme == "s3":
        endpoint = settings.job_s3_endpoint_url or settings.s3_endpoint_url
        return S3Source(first, second, endpoint, settings.aws_region)
    return folder_source(first, settings.folder_roots)


@dataclass(frozen=True)
class _Prepared:
    claim: ClaimedImage
    image: NewImage | None = None
    faces: Any = None  # ImageFaces
    keep: Sequence[int] = ()
    error: Exception | None = None
    skipped: bool = False


class AlbumIndexer:
    """Indexes claimed images of album jobs with one model pack."""

    def __init__(self, pack: ModelPack, jobs: JobStore, settings: Settings) -> None:
        self.pack = pack
        self.jobs = jobs
        self.settings = settings
        self.limits: ImageLimits = settings.image_limits
        key = settings.photo_key  # photos are stored sealed, as by single-image indexing
        self._cipher = PhotoCipher(key) if key is not None else None
        self._sources: dict[str, AlbumSource] = {}
        self._reader = ThreadPoolExecutor(4, thread_name_prefix="album-read")

    def close(self) -> None:
        self._reader.shutdown(wait=False, cancel_futures=True)

    def _source(self, claim: ClaimedImage) -> AlbumSource:
        source = self._sources.get(claim.job_id)
        if source is None:
            source = open_source(claim.source, claim.source_kind, claim.options, self.settings)
            if len(self._sources) > 64:
                self._sources.clear()
            self._sources[claim.job_id] = source
        return source

    def _read(self, claim: ClaimedImage) -> bytes:
        return self._source(claim).read(claim.key, self.limits.max_bytes)

    def process(self, claims: Sequence[ClaimedImage]) -> dict[str, int]:
        """Index a group of claimed images (their files read in parallel, their faces
        embedded in one batch); returns how many ended in each outcome."""
        reads = [self._reader.submit(self._read_and_hash, c) for c in claims]
        known = self._known(claims, reads)
        prepared = [self._prepare(c, r, known) for c, r in zip(claims, reads, strict=True)]
        chips = [p.faces.faces[i].chip for p in prepared if p.image is not None for i in p.keep]
        vectors = self.pack.embed_chips(np.stack(chips)) if chips else np.zeros((0, 0))
        outcomes: dict[str, int] = {}
        offset = 0
        for p in prepared:
            outcome = self._finish(p, vectors[offset : offset + len(p.keep)])
            if p.image is not None:
                offset += len(p.keep)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        return outcomes

    def _read_and_hash(self, claim: ClaimedImage) -> tuple[bytes, str]:
        data = self._read(claim)
        return data, hashlib.sha256(data).hexdigest()

    def _known(self, claims: Sequence[ClaimedImage], reads: Sequence[Any]) -> set[str]:
        """Hashes or external ids (as the job skips by) of the group's images the collection
        holds already; one query (a group comes from one job)."""
        images = []
        for claim, read in zip(claims, reads, strict=True):
            if read.exception() is None:
                images.append(NewImage(claim.external_image_id, 1, 1, None, read.result()[1]))
        skip = claims[0].options.get("skip_existing", "hash")
        try:
            return self.jobs.indexed_among(claims[0].collection, images, skip)
        except FaceserveError:  # e.g. the collection is gone: each image says so below
            return set()

    def _prepare(self, claim: ClaimedImage, read: Any, known: set[str]) -> _Prepared:
        options = claim.options
        skip = options.get("skip_existing", "hash")
        try:
            data, content_hash = read.result()
            image = NewImage(claim.external_image_id, 1, 1, None, content_hash)
            key = content_hash if skip == "hash" else claim.external_image_id
            if skip != "none" and key in known:
                return _Prepared(claim, skipped=True, image=image)
            found: ImageFaces = detect_faces(self.pack, data, self.limits)
            level = QualityFilter.parse(options.get("quality_filter"))
            keep, _ = select_faces(found.faces, options.get("max_faces"), level)
            photo = self._cipher.seal(data) if self._cipher is not None else None
            image = NewImage(
                claim.external_image_id, found.width, found.height, photo, content_hash
            )
            return _Prepared(claim, image, found, keep)
        except Exception as err:  # noqa: BLE001 - an image's problem is its own, not the worker's
            if not isinstance(err, FaceserveError):
                log.exception("album job %s: image %s failed", claim.job_id, claim.key)
            return _Prepared(claim, error=err)

    def _finish(self, p: _Prepared, vectors: np.ndarray) -> str:
        claim = p.claim
        if p.error is not None:
            message = getattr(p.error, "message", None) or str(p.error) or type(p.error).__name__
            self.jobs.finish_image(
                claim.row_id, "failed", reason=failure_reason(p.error), message=message
            )
            return "failed"
        assert p.image is not None
        if p.skipped:
            self.jobs.finish_image(
                claim.row_id,
                "skipped",
                reason="already_indexed",
                message="the collection already holds this image",
                content_hash=p.image.content_hash,
            )
            return "skipped"
        metadata = {"source_key": claim.key, "job_id": claim.job_id}
        faces = [
            new_face(face, vectors[n], metadata)
            for n, face in enumerate(p.faces.faces[i] for i in p.keep)
        ]
        try:
            return self.jobs.commit_image(
                claim, p.image, faces, claim.options.get("skip_existing", "hash")
            )
        except NotFound as err:  # the collection was deleted under the job
            self.jobs.finish_image(claim.row_id, "failed", reason="not_found", message=err.message)
            return "failed"


class WorkerLoop:
    """One worker's loop: take images from the transport, index them, say they are done;
    until told to stop. Idle, it asks again every `poll_s`."""

    def __init__(
        self,
        name: str,
        indexer: AlbumIndexer,
        transport: Any,
        batch_size: int,
        poll_s: float = 0.5,
    ) -> None:
        self.name = name
        self.indexer = indexer
        self.transport = transport
        self.batch_size = max(1, batch_size)
        self.poll_s = poll_s
        self.processed: dict[str, int] = {}

    def run(self, stop: Any) -> dict[str, int]:
        """Work until `stop` (a threading.Event) is set; returns the outcomes counted."""
        while not stop.is_set():
            try:
                claims = self.transport.take(self.name, self.batch_size)
            except Exception:  # noqa: BLE001 - a database or queue outage: wait, try again
                log.exception("album worker %s: cannot take work", self.name)
                stop.wait(2.0)
                continue
            if not claims:
                stop.wait(self.poll_s)
                continue
            try:
                outcomes = self.indexer.process(claims)
            except Exception:  # noqa: BLE001 - e.g. the database went away mid-group
                log.exception("album worker %s: a group of images failed", self.name)
                self.transport.give_back(self.name, claims)
                stop.wait(2.0)
                continue
            self.transport.done(claims)
            for outcome, count in outcomes.items():
                self.processed[outcome] = self.processed.get(outcome, 0) + count
        return dict(self.processed)
