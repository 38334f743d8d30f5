"""Vector search at scale through the real storage path, against exact search.

    python -m bench.vectors --vectors V.npy --queries Q.npy [--ids I.npy] [--k 10] --json
    python -m bench.vectors generate --n 1000000 --dim 128 --out DIR   (V.npy Q.npy I.npy QI.npy)

Loads float32 vectors (one row each, any dimension) into a fresh collection of an embedded
PostgreSQL through `Store.add_faces` (batches of 4,096, as an album job's images would,
without pgvector's HNSW index, which is built afterwards when the path uses it), builds the
index the path uses, runs the queries through `Store.search`, and prints one JSON line:
recall@k against exact search (numpy), identity-in-top-k when `--ids` are given (a query's
identity: `--query-ids`, else that of its exact nearest row), p50/p95/p99 ms at one client,
queries per second at `--clients` clients, load and build seconds, and peak memory.

Paths: `local` (default; the Search deployment's replica-local index, `vectors/replica.py`),
`pgvector` (HNSW with today's settings, or `--hnsw-m/--ef-construction/--ef-search`).
Synthetic face-like data (`generate`): identities around a shared mean direction, a few
noisy samples each (same-identity cosine ~0.93, different ~0.78, like dlib-r29's).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from sqlalchemy import text
from sqlalchemy.schema import CreateIndex

from serve_app.store import EmbeddedPostgres, NewFace, NewImage, Store
from serve_app.store.collection_schema import quoted_schema
from serve_app.store.database import create_engine_for
from serve_app.store.store import MAX_PAGE
from serve_app.store.vectors import PgVectorIndex
from serve_app.store.vectors import pgvector as pgv
from serve_app.store.vectors.replica import LocalIndexConfig

SAMPLES_PER_IDENTITY = 5


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def synthetic(
    n: int, dim: int, queries: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(vectors, identity of each, queries, identity of each query): queries are new noisy
    samples of enrolled identities."""
    identities = max(1, n // SAMPLES_PER_IDENTITY)
    mean = _unit(rng.standard_normal(dim))
    centres = _unit(mean + 0.45 * _unit(rng.standard_normal((identities, dim))))
    labels = np.arange(n) % identities
    vectors = np.empty((n, dim), dtype=np.float32)
    for lo in range(0, n, 100_000):
        hi = min(n, lo + 100_000)
        noise = _unit(rng.standard_normal((hi - lo, dim)))
        vectors[lo:hi] = _unit(centres[labels[lo:hi]] + 0.27 * noise)
    targets = rng.integers(0, identities, queries)
    asked = _unit(centres[targets] + 0.27 * _unit(rng.standard_normal((queries, dim))))
    return vectors, labels, asked, targets


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Row numbers of each query's exact top-k by cosine, best first."""
    unit = _unit(vectors)
    tops = []
    for block in np.array_split(_unit(queries), max(1, len(queries) // 20)):
        scores = unit @ block.T  # (n, b)
        part = np.argpartition(-scores, k - 1, axis=0)[:k].T
        order = np.take_along_axis(scores.T, part, axis=1).argsort(axis=1)[:, ::-1]
        tops.append(np.take_along_axis(part, order, axis=1))
    return np.concatenate(tops)


def _face(vector: np.ndarray) -> NewFace:
    box = {"left": 0.0, "top": 0.0, "width": 1.0, "height": 1.0}
    return NewFace(box, [], 99.0, {}, vector)


def load(store: Store, name: str, vectors: np.ndarray) -> list[str]:
    """Faces through `Store.add_faces`, without the pgvector HNSW index (built after)."""
    collection = store.create_collection(name, "bench:1", vectors.shape[1])
    with store.engine.begin() as conn:
        conn.execute(text(f"DROP INDEX {quoted_schema(collection.schema_name)}.{pgv._HNSW_INDEX}"))
    ids: list[str] = []
    for lo in range(0, len(vectors), MAX_PAGE):
        faces = [_face(v) for v in vectors[lo : lo + MAX_PAGE]]
        ids += [f.face_id for f in store.add_faces(name, NewImage(None, 1, 1), faces)]
        if lo and lo % 100_000 < MAX_PAGE:
            print(f"  loaded {lo:,}", file=sys.stderr, flush=True)
    return ids


def build_hnsw(store: Store, name: str) -> None:
    """pgvector's HNSW index from its definition, as a migration of a large album would."""
    collection = store.get_collection(name, counted=False)
    table = pgv._vectors_table(collection.schema_name, collection.embedding_dim)
    (index,) = [i for i in table.indexes if i.name == pgv._HNSW_INDEX]
    with store.engine.begin() as conn:
        conn.execute(text("SET LOCAL maintenance_work_mem = '2GB'"))
        conn.execute(text("SET LOCAL max_parallel_maintenance_workers = 1"))
        conn.execute(CreateIndex(index))
        conn.execute(text(f"ANALYZE {quoted_schema(collection.schema_name)}.face_vectors"))


def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def run(args: argparse.Namespace) -> dict[str, Any]:
    vectors = np.load(args.vectors).astype(np.float32)
    queries = np.load(args.queries).astype(np.float32)
    ids_of_rows = np.load(args.ids) if args.ids else None
    k = args.k
    truth = exact_top(vectors, queries, k)
    if ids_of_rows is not None:
        wanted = np.load(args.query_ids) if args.query_ids else ids_of_rows[truth[:, 0]]
    result: dict[str, Any] = {
        "path": args.path,
        "vectors": len(vectors),
        "dim": int(vectors.shape[1]),
        "queries": len(queries),
        "k": k,
    }
    if args.path == "pgvector":
        pgv.HNSW_M, pgv.HNSW_EF_CONSTRUCTION = args.hnsw_m, args.ef_construction
        pgv.DEFAULT_EF_SEARCH = args.ef_search
        pgv.vectors_definition.cache_clear()
        result["settings"] = {
            "m": args.hnsw_m,
            "ef_construction": args.ef_construction,
            "ef_search": args.ef_search,
        }
        backend = PgVectorIndex()
    else:
        config = LocalIndexConfig(rerank=args.rerank)
        result["settings"] = {"rerank": config.rerank, "coarse_from": config.coarse_from}
        backend = PgVectorIndex(config)
    tmp = Path(tempfile.mkdtemp(prefix="faceserve-bench-"))
    try:
        with EmbeddedPostgres(tmp) as postgres:
            Store.open(postgres.url).close()  # migrates
            store = Store(create_engine_for(postgres.url), vector_indexes=[backend])
            try:
                started = time.perf_counter()
                face_ids = load(store, "bench", vectors)
                result["load_s"] = round(time.perf_counter() - started, 1)
                rss_before = _rss_mb()
                started = time.perf_counter()
                if args.path == "pgvector":
                    build_hnsw(store, "bench")
                else:
                    state = store.warm_vector_indexes(["bench"], wait_s=3600)
                    assert state == {"bench": "ready"}, state
                result["build_s"] = round(time.perf_counter() - started, 1)
                result["index_rss_mb"] = round(_rss_mb() - rss_before, 1)
                result.update(_measure(store, face_ids, queries, truth, k, args.clients))
                if ids_of_rows is not None:
                    result["identity_in_top_k"] = _identity_hits(
                        store, face_ids, queries, ids_of_rows, wanted, k
                    )
                    if args.persons:
                        result["persons"] = _persons(
                            store, face_ids, queries, ids_of_rows, wanted, args.persons
                        )
                result["peak_rss_mb"] = round(
                    resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
                )
                result["vector_stats"] = store.vector_stats("bench")
            finally:
                store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def _measure(
    store: Store,
    face_ids: list[str],
    queries: np.ndarray,
    truth: np.ndarray,
    k: int,
    clients: int,
) -> dict[str, Any]:
    for q in queries[:5]:  # warm-up
        store.search("bench", q, k, -1.0)
    recalls, times = [], []
    for q, top in zip(queries, truth, strict=True):
        started = time.perf_counter()
        found = store.search("bench", q, k, -1.0)
        times.append(time.perf_counter() - started)
        got = {face.face_id for face, _ in found}
        recalls.append(len(got & {face_ids[i] for i in top}) / k)
    ms = np.array(times) * 1000
    with ThreadPoolExecutor(clients) as pool:
        started = time.perf_counter()
        list(pool.map(lambda q: store.search("bench", q, k, -1.0), queries))
        qps = len(queries) / (time.perf_counter() - started)
    return {
        "recall_at_k": round(float(np.mean(recalls)), 4),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p95_ms": round(float(np.percentile(ms, 95)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        f"qps_{clients}_clients": round(qps, 1),
    }


def _identity_hits(
    store: Store,
    face_ids: list[str],
    queries: np.ndarray,
    ids_of_rows: np.ndarray,
    wanted: np.ndarray,
    k: int,
) -> float:
    row_of = {face_id: i for i, face_id in enumerate(face_ids)}
    hits = []
    for q, identity in zip(queries, wanted, strict=True):
        found = store.search("bench", q, k, -1.0)
        hits.append(any(ids_of_rows[row_of[f.face_id]] == identity for f, _ in found))
    return round(float(np.mean(hits)), 4)


def _persons(
    store: Store,
    face_ids: list[str],
    queries: np.ndarray,
    ids_of_rows: np.ndarray,
    wanted: np.ndarray,
    n: int,
) -> dict[str, Any]:
    """`Store.search_persons` (k=5) after making persons of the queries' identities and
    others, up to `n` persons: how often the query's person is first, and its latency."""
    identities = list(dict.fromkeys([*wanted.tolist(), *np.unique(ids_of_rows).tolist()]))[:n]
    rows_of: dict[int, list[int]] = {}
    chosen = set(identities)
    for row, identity in enumerate(ids_of_rows.tolist()):
        if identity in chosen:
            rows_of.setdefault(identity, []).append(row)
    started = time.perf_counter()
    for identity in identities:
        store.create_person("bench", f"p{identity}")
        faces = [face_ids[r] for r in rows_of[identity]]
        store.associate_faces("bench", f"p{identity}", faces, -1.0, 100)
    made_s = time.perf_counter() - started
    first, times = [], []
    for q, identity in zip(queries, wanted, strict=True):
        started = time.perf_counter()
        found = store.search_persons("bench", q, 5, -1.0)
        times.append(time.perf_counter() - started)
        first.append(bool(found) and found[0][0].person_id == f"p{identity}")
    ms = np.array(times) * 1000
    return {
        "persons": len(identities),
        "person_faces": sum(len(rows_of[i]) for i in identities),
        "made_s": round(made_s, 1),
        "right_person_first": round(float(np.mean(first)), 4),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
    }


def generate(args: argparse.Namespace) -> None:
    vectors, labels, queries, targets = synthetic(
        args.n, args.dim, args.queries, np.random.default_rng(args.seed)
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, array in (("V", vectors), ("I", labels), ("Q", queries), ("QI", targets)):
        np.save(out / f"{name}.npy", array)
    print(f"wrote {out}/V.npy ({len(vectors):,}x{args.dim}), Q.npy, I.npy, QI.npy")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.vectors", description=__doc__)
    parser.add_argument("--vectors", required=True, help="float32 .npy, one row per face")
    parser.add_argument("--queries", required=True, help="float32 .npy, one row per query")
    parser.add_argument("--ids", help=".npy: the identity of each row of --vectors")
    parser.add_argument("--query-ids", help=".npy: the identity of each query")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--path", choices=["local", "pgvector"], default="local")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument(
        "--persons", type=int, default=0, help="also time search_persons with this many persons"
    )
    parser.add_argument("--rerank", type=int, default=LocalIndexConfig.rerank)
    parser.add_argument("--hnsw-m", type=int, default=pgv.HNSW_M)
    parser.add_argument("--ef-construction", type=int, default=pgv.HNSW_EF_CONSTRUCTION)
    parser.add_argument("--ef-search", type=int, default=pgv.DEFAULT_EF_SEARCH)
    parser.add_argument("--json", action="store_true", help="print one JSON line (default)")
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["generate"]:
        parser = argparse.ArgumentParser(prog="python -m bench.vectors generate")
        parser.add_argument("--n", type=int, required=True)
        parser.add_argument("--dim", type=int, default=128)
        parser.add_argument("--queries", type=int, default=200)
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument("--out", required=True)
        generate(parser.parse_args(argv[1:]))
        return
    print(json.dumps(run(_parser().parse_args(argv))))


def bench_vectors(sizes: list[int]) -> list[str]:
    """Rows of a BENCHMARKS.md table for `bench/run.py`: both paths at each size."""
    rows = [
        "`python -m bench.vectors` per size and path (k=10, 200 queries, 8 clients for qps).",
        "",
        "| vectors | path | recall@10 | identity in top 10 | p50 ms | p99 ms | qps (8) | build s |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for n in sizes:
        data = Path(tempfile.mkdtemp(prefix="faceserve-vectors-"))
        try:
            generate(argparse.Namespace(n=n, dim=128, queries=200, seed=7, out=data))
            for path in ("pgvector", "local"):
                files = [f"--{a}={data}/{f}.npy" for a, f in _FILES]
                r = run(_parser().parse_args([*files, f"--path={path}"]))
                rows.append(
                    f"| {n:,} | {path} | {r['recall_at_k']:.3f} | {r['identity_in_top_k']:.3f} "
                    f"| {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['qps_8_clients']:.0f} "
                    f"| {r['build_s']:.0f} |"
                )
        finally:
            shutil.rmtree(data, ignore_errors=True)
    return rows


_FILES = (("vectors", "V"), ("queries", "Q"), ("ids", "I"), ("query-ids", "QI"))


if __name__ == "__main__":
    main()
