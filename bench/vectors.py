"""Vector search at scale: pgvector HNSW through `Store.search` against exact search.

Synthetic face-like 128-D data (identities around a shared mean direction, a few noisy
samples each: same-identity cosine ~0.93, different ~0.78, like dlib-r29's embeddings).
Rows are bulk-loaded with COPY and the HNSW index built afterwards, as a migration of a
large album would; queries are new noisy samples of enrolled identities.
"""

from __future__ import annotations

import io
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from serve_app.store.collection_schema import quoted_schema
from serve_app.store.embedded import EmbeddedPostgres
from serve_app.store.store import Store
from serve_app.store.vectors import pgvector as pgv

DIM = 128
SAMPLES_PER_IDENTITY = 5
QUERIES = 200


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def synthetic(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vectors, identity of each vector, identity centres)."""
    identities = max(1, n // SAMPLES_PER_IDENTITY)
    mean = _unit(rng.standard_normal(DIM))
    centres = _unit(mean + 0.45 * _unit(rng.standard_normal((identities, DIM))))
    labels = np.arange(n) % identities
    vectors = np.empty((n, DIM), dtype=np.float32)
    for lo in range(0, n, 100_000):
        hi = min(n, lo + 100_000)
        noise = _unit(rng.standard_normal((hi - lo, DIM)))
        vectors[lo:hi] = _unit(centres[labels[lo:hi]] + 0.27 * noise)
    return vectors, labels, centres


def _copy(raw, table: str, columns: str, lines: io.StringIO) -> None:
    lines.seek(0)
    with raw.cursor() as cur:
        cur.copy_expert(f"COPY {table} ({columns}) FROM STDIN", lines)


def load(store: Store, name: str, vectors: np.ndarray) -> tuple[list[str], float]:
    """Bulk-load a collection; returns face ids and the HNSW build time in seconds."""
    collection = store.create_collection(name, "dlib-r29:1", DIM)
    s = quoted_schema(collection.schema_name)
    image_id = str(uuid.uuid4())
    ids = [str(uuid.uuid4()) for _ in range(len(vectors))]
    raw = store.engine.raw_connection()
    try:
        with raw.cursor() as cur:
            cur.execute(f"DROP INDEX {s}.face_vectors_embedding_hnsw")
            cur.execute(
                f"INSERT INTO {s}.images (id, width, height) VALUES (%s, 1, 1)", (image_id,)
            )
        for lo in range(0, len(ids), 100_000):
            chunk = range(lo, min(len(ids), lo + 100_000))
            faces = io.StringIO("".join(f"{ids[i]}\t{image_id}\t{{}}\t[]\t1\n" for i in chunk))
            _copy(raw, f"{s}.faces", "id, image_id, bounding_box, landmarks, confidence", faces)
            vecs = io.StringIO(
                "".join(f"{ids[i]}\t[{','.join(f'{x:.6f}' for x in vectors[i])}]\n" for i in chunk)
            )
            _copy(raw, f"{s}.face_vectors", "face_id, embedding", vecs)
        raw.commit()
        started = time.perf_counter()
        with raw.cursor() as cur:
            cur.execute("SET maintenance_work_mem = '2GB'")
            cur.execute("SET max_parallel_maintenance_workers = 1")
            cur.execute(
                f"CREATE INDEX face_vectors_embedding_hnsw ON {s}.face_vectors "
                "USING hnsw (embedding vector_cosine_ops) "
                f"WITH (m = {pgv.HNSW_M}, ef_construction = {pgv.HNSW_EF_CONSTRUCTION})"
            )
            cur.execute(f"ANALYZE {s}.face_vectors")
        raw.commit()
        return ids, time.perf_counter() - started
    finally:
        raw.close()


def exact_ms(store: Store, name: str, queries: np.ndarray) -> float:
    """Median latency of `Store.search` forced onto its exact-scan path (same code path)."""
    saved = pgv.EXACT_SEARCH_BELOW
    pgv.EXACT_SEARCH_BELOW = 10**12
    try:
        times = []
        for q in queries:
            started = time.perf_counter()
            store.search(name, q, 10, -1.0)
            times.append(time.perf_counter() - started)
    finally:
        pgv.EXACT_SEARCH_BELOW = saved
    return statistics.median(times) * 1000


def bench_size(store: Store, n: int, rng: np.random.Generator) -> str:
    vectors, labels, centres = synthetic(n, rng)
    name = f"bench_{n}"
    print(f"  vectors: loading {n:,} …", file=sys.stderr, flush=True)
    ids, build_s = load(store, name, vectors)
    targets = rng.integers(0, len(centres), QUERIES)
    queries = _unit(centres[targets] + 0.27 * _unit(rng.standard_normal((QUERIES, DIM))))
    # Exact top-10 per query, in blocks of queries to bound memory at 1M vectors.
    truth = np.concatenate(
        [
            np.argpartition(-(vectors @ block.T), 10, axis=0)[:10].T
            for block in np.split(queries, 10)
        ]
    )
    position = {face_id: i for i, face_id in enumerate(ids)}
    recalls, hits, times = [], [], []
    for q, top, target in zip(queries, truth, targets, strict=True):
        started = time.perf_counter()
        found = store.search(name, q, 10, -1.0)
        times.append(time.perf_counter() - started)
        got = {face.face_id for face, _ in found}
        recalls.append(len(got & {ids[i] for i in top}) / 10)
        hits.append(any(labels[position[f]] == target for f in got))
    times_ms = np.array(times) * 1000
    exact = exact_ms(store, name, queries[:20])
    store.delete_collection(name)
    return (
        f"| {n:,} | {np.mean(recalls):.3f} | {np.mean(hits):.3f} | "
        f"{np.percentile(times_ms, 50):.1f} | "
        f"{np.percentile(times_ms, 95):.1f} | {np.percentile(times_ms, 99):.1f} | {exact:.1f} | "
        f"{build_s:.0f} |"
    )


def bench_vectors(sizes: list[int]) -> list[str]:
    rng = np.random.default_rng(7)
    rows = [
        f"`Store.search` (k=10, HNSW m={pgv.HNSW_M}, ef_construction={pgv.HNSW_EF_CONSTRUCTION},"
        f" ef_search {pgv.DEFAULT_EF_SEARCH}; exact scan below {pgv.EXACT_SEARCH_BELOW:,}) on "
        f"{QUERIES} queries; recall@10 against exact top-10 computed in numpy; exact-scan "
        "latency is `Store.search` forced onto its exact path (20 queries).",
        "",
        "| vectors | recall@10 | identity in top 10 | p50 ms | p95 ms | p99 ms "
        "| exact scan p50 ms | index build s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    tmp = tempfile.mkdtemp(prefix="faceserve-bench-")
    with EmbeddedPostgres(Path(tmp)) as postgres:
        store = Store.open(postgres.url)
        try:
            for n in sizes:
                rows.append(bench_size(store, n, rng))
        finally:
            store.close()
    shutil.rmtree(tmp, ignore_errors=True)
    return rows


if __name__ == "__main__":
    sizes = [int(x) for x in sys.argv[1:]] or [10_000, 100_000]
    print("\n".join(bench_vectors(sizes)))
