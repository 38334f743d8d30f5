"""Replica-local ANN indexes of pgvector collections, kept in step with the database.

pgvector's HNSW index loses recall as a collection grows (0.33 recall@10 at 1M vectors with
our settings, see BENCHMARKS.md), and so does an in-process HNSW graph on face-like data
(FAISS M=32: 0.79 at ef_search 512). Each Search replica therefore keeps, per large
collection, the normalised float32 vectors in memory and scans them all, per query, as 4-bit
PQ codes (FAISS fast-scan, 64 bytes a 128-D vector), then scores the best `rerank`
candidates exactly: recall that does not fall with size, at a cost linear in it.
PostgreSQL stays the source of truth:

- **built from PostgreSQL** in the background, on the first search of a large collection (or
  at the replica's start): chunks of `face_vectors` read with binary COPY, each in its own
  short transaction, so a build never holds back other replicas' view of the change log;
- **kept in step** by the collection's `vector_changes` log, written in the same transaction
  as every vector add and delete. A replica consumes the rows of transactions older than
  every transaction still running (`pg_snapshot_xmin`), so a write that commits late is never
  skipped, and polls every `poll_interval_s`; a write made through this replica is applied
  before its next search (read your own writes);
- **searched, then checked**: the hits (face `seq`s) are read back from `faces`, so a face
  deleted but not yet applied here is never returned;
- **bounded**: the estimated bytes of all local indexes stay under `max_bytes`; a collection
  that does not fit is searched in PostgreSQL instead, as it is while its index warms.

A write is searchable on every replica within `poll_interval_s` plus the time the longest
concurrent write transaction stays open (the store's are milliseconds long).
"""

from __future__ import annotations

import io
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from serve_app.store.collection_schema import quoted_schema
from serve_app.store.records import CollectionRecord

log = logging.getLogger(__name__)

# SQLSTATEs of a table or schema that vanished: the collection was deleted.
_GONE = {"42P01", "3F000"}
_BUILD_CHUNK = 50_000  # rows per COPY while building (64-200 MB at 512-D)
_ADD_CHUNK = 2_000  # vectors added per write-lock hold, so searches never wait long
# Change-log rows are kept a day: longer than any write transaction stays open.
_LOG_KEPT_S = 24 * 3600
_PRUNE_EVERY_S = 600
_HORIZON = text("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")


@dataclass(frozen=True)
class LocalIndexConfig:
    """How Search replicas keep their local indexes (settings `FACESERVE_LOCAL_INDEX_*`)."""

    # The estimated bytes of all local indexes of one replica together.
    max_bytes: int = 8 * 2**30
    # Collections smaller than this are searched in PostgreSQL (its exact scan is as fast).
    min_faces: int = 5_000
    # Seconds between two reads of the change log (the bound on cross-replica staleness).
    poll_interval_s: float = 0.2
    # Candidates of the 4-bit PQ scan scored exactly (measured: recall@10 1.0 at 1M 128-D
    # with 500, BENCHMARKS.md), and the size from which that scan is used (below it, every
    # vector is scored exactly).
    rerank: int = 500
    coarse_from: int = 20_000
    # Rebuild a collection's index once this share of its rows are deleted faces.
    rebuild_deleted_share: float = 0.25

    @staticmethod
    def subquantizers(dim: int) -> int:
        """PQ sub-vectors of the coarse scan, 4 bits each: one per dimension up to 256 (so
        128-D vectors scan as 64 bytes, 512-D as 128 bytes: measured at 1M vectors, one per
        dimension there costs a 256 MB scan a query, ~50 ms on 2 cores)."""
        return max(m for m in range(1, min(dim, 256) + 1) if dim % m == 0)

    def bytes_per_vector(self, dim: int) -> int:
        """Memory of one vector: normalised float32 values, its 4-bit PQ code, seq, face id,
        alive."""
        return 4 * dim + self.subquantizers(dim) // 2 + 25


class _ReadWriteLock:
    """Many searches at once, or one writer (preferred, so writes are never starved)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    @contextmanager
    def reading(self) -> Iterator[None]:
        with self._cond:
            while self._writing or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextmanager
    def writing(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            while self._writing or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


class LocalIndex:
    """One collection's vectors by face `seq`: normalised float32 rows, searched exactly
    below `config.coarse_from` rows and above it through a FAISS fast-scan PQ index whose
    `config.rerank` best candidates are then scored exactly."""

    def __init__(
        self, collection: CollectionRecord, config: LocalIndexConfig, capacity: int = 1024
    ) -> None:
        self.collection_id = collection.id
        self.schema_name = collection.schema_name
        self.dim = collection.embedding_dim
        self.config = config
        capacity = max(1024, capacity)
        self._vectors = np.empty((capacity, self.dim), dtype=np.float32)
        self._seqs = np.empty(capacity, dtype=np.int64)
        self._face_ids = np.empty((capacity, 16), dtype=np.uint8)  # uuid bytes
        self._alive = np.zeros(capacity, dtype=bool)
        self._present = np.zeros(1 << 12, dtype=np.uint8)  # bit per face seq: indexed
        self._coarse: Any = None  # faiss IndexPQFastScan over rows [0, nodes)
        self.nodes = 0  # rows, deleted ones included
        self.alive = 0
        self.watermark = "0"  # xid8: change-log rows of older transactions are applied
        self.synced_at = 0.0
        # Writes committed through this replica, and how many of them a sync has applied.
        self.local_writes = 0
        self.applied_writes = 0
        self.lock = _ReadWriteLock()
        self.sync_lock = threading.Lock()

    @property
    def estimated_bytes(self) -> int:
        return self.nodes * self.config.bytes_per_vector(self.dim) + self._present.nbytes

    @property
    def needs_rebuild(self) -> bool:
        """Too many deleted rows, or grown past the size that needs a trained coarse index."""
        deleted = self.nodes - self.alive
        if deleted > 1_000 and deleted > self.config.rebuild_deleted_share * self.nodes:
            return True
        return self._coarse is None and self.alive >= 2 * self.config.coarse_from

    def _has(self, seqs: np.ndarray) -> np.ndarray:
        inside = seqs < self._present.size * 8
        found = np.zeros(len(seqs), dtype=bool)
        s = seqs[inside]
        found[inside] = ((self._present[s >> 3] >> (s & 7).astype(np.uint8)) & 1) == 1
        return found

    def train(self, sample: np.ndarray) -> None:
        """Train the coarse index on a sample of the collection's vectors (before any add)."""
        import faiss  # imported when first needed: only Search replicas build indexes

        # One thread: a one-query scan does not split across OpenMP threads, whose spinning
        # only slows the replica's other threads (measured: 4.3 vs 3.6 ms at 300k, 2 cores).
        faiss.omp_set_num_threads(1)
        assert self.nodes == 0
        coarse = faiss.index_factory(
            self.dim, f"PQ{self.config.subquantizers(self.dim)}x4fs", faiss.METRIC_INNER_PRODUCT
        )
        coarse.train(_normalised(sample))
        self._coarse = coarse

    def add(self, seqs: np.ndarray, face_ids: np.ndarray, vectors: np.ndarray) -> int:
        """Add the vectors of faces not in the index yet (adds are replayed idempotently);
        returns how many were new."""
        seqs = np.asarray(seqs, dtype=np.int64)
        if len(seqs) == 0:
            return 0
        _, first = np.unique(seqs, return_index=True)  # a seq once, even if replayed twice
        keep = np.zeros(len(seqs), dtype=bool)
        keep[first] = True
        keep &= ~self._has(seqs)
        seqs, vectors = seqs[keep], np.asarray(vectors, dtype=np.float32)[keep]
        face_ids = np.asarray(face_ids, dtype=np.uint8)[keep]
        if len(seqs) == 0:
            return 0
        vectors = _normalised(vectors)
        for lo in range(0, len(seqs), _ADD_CHUNK):
            chunk, rows = seqs[lo : lo + _ADD_CHUNK], vectors[lo : lo + _ADD_CHUNK]
            ids = face_ids[lo : lo + _ADD_CHUNK]
            with self.lock.writing():
                self._reserve(self.nodes + len(chunk), int(chunk.max()))
                at = slice(self.nodes, self.nodes + len(chunk))
                self._vectors[at] = rows
                self._seqs[at] = chunk
                self._face_ids[at] = ids
                self._alive[at] = True
                if self._coarse is not None:
                    self._coarse.add(rows)
                np.bitwise_or.at(self._present, chunk >> 3, (1 << (chunk & 7)).astype(np.uint8))
                self.nodes += len(chunk)
                self.alive += len(chunk)
        return len(seqs)

    def _reserve(self, rows: int, max_seq: int) -> None:
        if rows > len(self._seqs):
            size = max(rows, int(len(self._seqs) * 1.5))
            self._vectors = np.resize(self._vectors, (size, self.dim))
            self._seqs = np.resize(self._seqs, size)
            self._face_ids = np.resize(self._face_ids, (size, 16))
            alive = np.zeros(size, dtype=bool)
            alive[: self.nodes] = self._alive[: self.nodes]
            self._alive = alive
        if max_seq // 8 + 1 > self._present.size:
            grown = np.zeros(max(max_seq // 8 + 1, 2 * self._present.size), dtype=np.uint8)
            grown[: self._present.size] = self._present
            self._present = grown

    def delete(self, seqs: np.ndarray) -> None:
        """Make these faces unsearchable (their rows stay until a rebuild)."""
        seqs = np.unique(np.asarray(seqs, dtype=np.int64))
        with self.lock.writing():
            seqs = seqs[self._has(seqs)]
            if len(seqs) == 0:
                return
            rows = np.flatnonzero(np.isin(self._seqs[: self.nodes], seqs))
            self._alive[rows] = False
            np.bitwise_and.at(
                self._present, seqs >> 3, (~(1 << (seqs & 7))).astype(np.uint8) & 0xFF
            )
            self.alive -= len(seqs)

    def search(self, vector: np.ndarray, k: int) -> list[tuple[int, str, float]]:
        """Up to `k` (face seq, face id, exact cosine) nearest to `vector`, best first."""
        query = _normalised(np.asarray(vector, dtype=np.float32).reshape(1, -1))
        with self.lock.reading():
            n = self.nodes
            if self.alive == 0:
                return []
            if self._coarse is None:
                rows = np.flatnonzero(self._alive[:n])
                scores = _scores(self._vectors[rows], query[0]) if self.alive < n else None
                if scores is None:
                    rows, scores = np.arange(n), _scores(self._vectors[:n], query[0])
            else:
                wanted = min(n, max(self.config.rerank, 2 * k))
                _, candidates = self._coarse.search(query, wanted)
                rows = candidates[0][candidates[0] >= 0]
                rows = rows[self._alive[rows]]
                scores = _scores(self._vectors[rows], query[0])
            if len(rows) > k:
                best = np.argpartition(-scores, k)[:k]
                rows, scores = rows[best], scores[best]
            order = np.argsort(-scores, kind="stable")
            seqs = self._seqs[rows[order]]
            face_ids = self._face_ids[rows[order]]
            scores = scores[order]
        return [
            (int(seq), str(uuid.UUID(bytes=face_id.tobytes())), min(1.0, max(-1.0, float(score))))
            for seq, face_id, score in zip(seqs, face_ids, scores, strict=True)
        ]


def _scores(rows: np.ndarray, query: np.ndarray) -> np.ndarray:
    # einsum, not BLAS: OpenBLAS splits a matrix-vector product over threads whose start-up
    # costs more than the product (20k x 128 on 2 busy cores: 5.2 ms by BLAS, 0.65 by einsum).
    return np.einsum("ij,j->i", rows, query)


def _normalised(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


class LocalIndexes:
    """The local indexes of one Search replica: built in the background, kept in step by a
    poller thread, bounded in memory; `index_for` says which collection has one ready."""

    def __init__(self, engine: Engine, config: LocalIndexConfig) -> None:
        self.engine = engine
        self.config = config
        self._ready: dict[str, LocalIndex] = {}
        self._state: dict[str, str] = {}  # collection id -> warming | ready | over memory cap
        self._records: dict[str, CollectionRecord] = {}
        self._lock = threading.Lock()
        self._queue: list[CollectionRecord] = []
        self._wake_builder = threading.Event()
        self._wake_poller = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- what searches ask ------------------------------------------------------------------

    def index_for(
        self, collection: CollectionRecord, big_enough: Callable[[], bool]
    ) -> LocalIndex | None:
        """The collection's index when it is ready (a write through this replica applied
        first); otherwise None, after queueing a build if `big_enough()` says it is worth one."""
        index = self._ready.get(collection.id)
        if index is not None:
            if index.applied_writes < index.local_writes:
                self._sync_quietly(index)
            return index if self._ready.get(collection.id) is index else None
        if collection.id not in self._state and big_enough():
            self.warm(collection)
        return None

    def state(self, collection: CollectionRecord) -> str:
        """cold, warming (a ready index may still serve while it is rebuilt), ready or
        over memory cap."""
        return self.state_of(collection.id)

    def state_of(self, collection_id: str) -> str:
        return self._state.get(collection_id, "cold")

    def stats(self, collection: CollectionRecord) -> dict[str, Any]:
        index = self._ready.get(collection.id)
        found: dict[str, Any] = {"state": self.state(collection)}
        if index is not None:
            found.update(
                vectors=index.alive,
                nodes=index.nodes,
                estimated_bytes=index.estimated_bytes,
                synced_ago_s=round(time.monotonic() - index.synced_at, 3),
            )
        return found

    def changed(self, collection: CollectionRecord) -> None:
        """A write through this replica committed: apply it before the next search here."""
        index = self._ready.get(collection.id)
        if index is not None:
            with self._lock:
                index.local_writes += 1
            self._wake_poller.set()

    # -- building -----------------------------------------------------------------------------

    def warm(self, collection: CollectionRecord) -> None:
        """Queue a build of the collection's index (no-op if it has one or one is queued)."""
        with self._lock:
            if self._state.get(collection.id) in ("warming", "ready"):
                return
            self._state[collection.id] = "warming"
            self._records[collection.id] = collection
            self._queue.append(collection)
            self._start_threads()
        self._wake_builder.set()

    def forget(self, collection_id: str) -> None:
        with self._lock:
            self._ready.pop(collection_id, None)
            self._state.pop(collection_id, None)
            self._records.pop(collection_id, None)

    def _start_threads(self) -> None:
        if self._threads:
            return
        for target, name in ((self._build_loop, "local-index-build"), (self._poll_loop, "poll")):
            thread = threading.Thread(target=target, name=f"faceserve-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _build_loop(self) -> None:
        while not self._stop.is_set():
            self._wake_builder.wait(1.0)
            self._wake_builder.clear()
            while not self._stop.is_set():
                with self._lock:
                    if not self._queue:
                        break
                    collection = self._queue.pop(0)
                try:
                    self._build(collection)
                except DBAPIError as err:
                    if getattr(err.orig, "pgcode", None) not in _GONE:
                        log.exception("local index of %s: build failed", collection.name)
                    self.forget(collection.id)
                except Exception:  # noqa: BLE001 - a failed build leaves PostgreSQL serving
                    log.exception("local index of %s: build failed", collection.name)
                    self.forget(collection.id)

    def _others_bytes(self, collection_id: str) -> int:
        return sum(i.estimated_bytes for c, i in self._ready.items() if c != collection_id)

    def _build(self, collection: CollectionRecord) -> None:
        started = time.perf_counter()
        s = quoted_schema(collection.schema_name)
        with self.engine.begin() as conn:
            count = conn.execute(text(f"SELECT count(*) FROM {s}.face_vectors")).scalar_one()
            # Changes of transactions from here on are replayed after the build; adds the
            # build already read are skipped then (by seq).
            watermark = conn.execute(_HORIZON).scalar_one()
        need = int(count) * self.config.bytes_per_vector(collection.embedding_dim)
        if self._others_bytes(collection.id) + need > self.config.max_bytes:
            log.warning(
                "local index of %s: %d vectors (~%d MB) exceed FACESERVE_LOCAL_INDEX_MAX_BYTES;"
                " searching it in PostgreSQL",
                collection.name,
                count,
                need >> 20,
            )
            with self._lock:
                self._state[collection.id] = "over memory cap"
            return
        index = LocalIndex(collection, self.config, capacity=int(count * 1.05) + 1024)
        index.watermark = watermark
        after = -1
        while not self._stop.is_set():
            seqs, face_ids, vectors = self._read_chunk(collection, after)
            if len(seqs) == 0:
                break
            if after < 0 and count >= self.config.coarse_from:
                index.train(vectors)  # on the first chunk (up to 50,000 vectors)
            index.add(seqs, face_ids, vectors)
            after = int(seqs[-1])
        self._sync(index)
        with self._lock:
            if self._state.get(collection.id) != "warming":
                return  # forgotten (deleted) meanwhile
            self._ready[collection.id] = index
            self._state[collection.id] = "ready"
        log.info(
            "local index of %s: %d vectors in %.1f s",
            collection.name,
            index.alive,
            time.perf_counter() - started,
        )

    def _read_chunk(
        self, collection: CollectionRecord, after: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Faces with seq > `after`, in seq order: seqs, ids (16 bytes each) and vectors; binary
        COPY, parsed as a
        fixed-layout numpy record array (pgvector's binary form: dim, unused, float32s)."""
        s = quoted_schema(collection.schema_name)
        dim = collection.embedding_dim
        query = (
            f"COPY (SELECT f.seq, f.id, v.embedding FROM {s}.faces f JOIN {s}.face_vectors v "
            f"ON v.face_id = f.id WHERE f.seq > {int(after)} ORDER BY f.seq "
            f"LIMIT {_BUILD_CHUNK}) TO STDOUT WITH (FORMAT binary)"
        )
        raw = self.engine.raw_connection()
        try:
            buffer = io.BytesIO()
            with raw.cursor() as cur:
                cur.copy_expert(query, buffer)
            raw.commit()
        finally:
            raw.close()
        data = buffer.getbuffer()
        row = np.dtype(
            [
                ("fields", ">i2"),
                ("seq_len", ">i4"),
                ("seq", ">i8"),
                ("id_len", ">i4"),
                ("id", "V16"),
                ("vec_len", ">i4"),
                ("dim", ">i2"),
                ("unused", ">i2"),
                ("values", ">f4", (dim,)),
            ]
        )
        header = 19  # signature (11), flags (4), header extension length (4, zero)
        rows = (len(data) - header - 2) // row.itemsize
        records = np.frombuffer(data, dtype=row, count=rows, offset=header)
        if rows and (records["dim"] != dim).any():
            raise ValueError(f"{collection.schema_name}: vectors are not {dim}-dimensional")
        face_ids = np.frombuffer(records["id"].tobytes(), dtype=np.uint8).reshape(-1, 16)
        return (
            records["seq"].astype(np.int64),
            face_ids,
            records["values"].astype(np.float32),
        )

    # -- keeping in step -------------------------------------------------------------------------

    def _poll_loop(self) -> None:
        pruned_at = time.monotonic()
        while not self._stop.is_set():
            self._wake_poller.wait(self.config.poll_interval_s)
            self._wake_poller.clear()
            prune = time.monotonic() - pruned_at > _PRUNE_EVERY_S
            for index in list(self._ready.values()):
                stale = time.monotonic() - index.synced_at > _LOG_KEPT_S / 2
                self._sync_quietly(index)
                if prune:
                    self._prune_quietly(index)
                if (stale or index.needs_rebuild) and self.state_of(index.collection_id) == "ready":
                    self._rebuild(index)  # out of step for half the log's life: start over
            if prune:
                pruned_at = time.monotonic()

    def _prune_quietly(self, index: LocalIndex) -> None:
        """Delete change-log rows older than any replica still needs (a replica that has not
        read the log for half that long rebuilds instead)."""
        s = quoted_schema(index.schema_name)
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    text(
                        f"DELETE FROM {s}.vector_changes "
                        "WHERE created_at < now() - make_interval(secs => :kept)"
                    ),
                    {"kept": _LOG_KEPT_S},
                )
        except DBAPIError as err:
            log.warning("pruning the vector change log failed (retried): %s", err)

    def _rebuild(self, index: LocalIndex) -> None:
        # The old index keeps serving (it skips deleted faces) until the new one is ready.
        record = self._records.get(index.collection_id)
        if record is None:
            return
        with self._lock:
            self._queue.append(record)
            self._state[index.collection_id] = "warming"
        self._wake_builder.set()

    def _sync_quietly(self, index: LocalIndex) -> None:
        try:
            self._sync(index)
        except DBAPIError as err:
            if getattr(err.orig, "pgcode", None) in _GONE:
                self.forget(index.collection_id)  # the collection was deleted
            else:
                log.warning("local index sync failed (retried): %s", err)
        except Exception:  # noqa: BLE001 - the poller must outlive one bad pass
            log.exception("local index sync failed (retried)")

    def _sync(self, index: LocalIndex) -> None:
        """Apply the change-log rows of every transaction that finished since the last sync."""
        with index.sync_lock:
            writes = index.local_writes  # committed already: this sync applies them
            s = quoted_schema(index.schema_name)
            with self.engine.begin() as conn:
                horizon = conn.execute(_HORIZON).scalar_one()
                if horizon == index.watermark:
                    index.synced_at = time.monotonic()
                    index.applied_writes = writes
                    return
                rows = conn.execute(
                    text(
                        f"SELECT c.face_seq, c.deleted, f.id, v.embedding::text AS embedding "
                        f"FROM {s}.vector_changes c "
                        f"LEFT JOIN {s}.faces f ON NOT c.deleted AND f.seq = c.face_seq "
                        f"LEFT JOIN {s}.face_vectors v ON v.face_id = f.id "
                        "WHERE c.xid >= CAST(:lo AS xid8) AND c.xid < CAST(:hi AS xid8) "
                        "ORDER BY c.seq"
                    ),
                    {"lo": index.watermark, "hi": horizon},
                ).all()
            added = [r for r in rows if not r.deleted and r.embedding is not None]
            if added:
                index.add(
                    np.array([r.face_seq for r in added], dtype=np.int64),
                    np.array([list(uuid.UUID(str(r.id)).bytes) for r in added], dtype=np.uint8),
                    np.stack([np.fromstring(r.embedding[1:-1], sep=",") for r in added]),
                )
            deleted = [r.face_seq for r in rows if r.deleted]
            if deleted:
                index.delete(np.array(deleted, dtype=np.int64))
            index.watermark = horizon
            index.synced_at = time.monotonic()
            index.applied_writes = writes
            if added and self._others_bytes(index.collection_id) + index.estimated_bytes > (
                self.config.max_bytes
            ):
                log.warning("local index over FACESERVE_LOCAL_INDEX_MAX_BYTES: dropped")
                with self._lock:
                    self._ready.pop(index.collection_id, None)
                    self._state[index.collection_id] = "over memory cap"

    def close(self) -> None:
        self._stop.set()
        self._wake_builder.set()
        self._wake_poller.set()
        for thread in self._threads:
            thread.join(timeout=5)
