"""The service over HTTP: indexing throughput, search latency, and what the Serve hops cost.

Starts the real service (Ray Serve + embedded PostgreSQL) in this process, like
`faceserve serve`, and drives it with httpx from client threads on the same 2-core machine
(the clients compete with the service for CPU: absolute figures are pessimistic).
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from serve_app.app import SERVE_CONFIG
from serve_app.config import Settings
from serve_app.server import start_local, stop_local
from serve_app.store import EmbeddedPostgres, Store


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _timed(fn: Callable[[], httpx.Response]) -> float:
    started = time.perf_counter()
    response = fn()
    elapsed = time.perf_counter() - started
    if response.status_code >= 400:
        raise RuntimeError(f"{response.status_code}: {response.text[:200]}")
    return elapsed


def _concurrent(
    fn: Callable[[], httpx.Response], clients: int, total: int
) -> tuple[list[float], float]:
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        times = list(pool.map(lambda _: _timed(fn), range(total)))
    return times, time.perf_counter() - started


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values) * 1000, q))


def bench_http(photos: list[bytes], query: bytes, model_dir: Path) -> list[str]:
    data_dir = Path(tempfile.mkdtemp(prefix="faceserve-bench-http-"))
    postgres = EmbeddedPostgres(data_dir / "pg")
    url = postgres.start()
    port = _free_port()
    settings = Settings(model_dir=model_dir, data_dir=data_dir, database_url=url, port=port)
    rows: list[str] = []
    try:
        print("  http: starting the service …", file=sys.stderr, flush=True)
        start_local(settings, SERVE_CONFIG)
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=120) as client:
            client.post("/v1/collections", json={"name": "bench"}).raise_for_status()

            def index(i: int) -> httpx.Response:
                blob = photos[i % len(photos)]
                return client.post("/v1/collections/bench/faces", files={"image": ("p", blob)})

            def search() -> httpx.Response:
                return client.post("/v1/collections/bench/search", files={"image": ("q", query)})

            for i in range(3):  # warm every replica's code path
                index(i)
                search()
            rows += [
                "| operation | clients | requests | throughput | p50 ms | p95 ms |",
                "|---|---:|---:|---:|---:|---:|",
            ]
            for clients in (1, 4):
                counter = iter(range(10**6))
                times, wall = _concurrent(
                    lambda c=counter: index(next(c)), clients, 2 * len(photos)
                )
                rate = len(times) / wall
                rows.append(
                    f"| index an image | {clients} | {len(times)} | {rate:.1f} images/s "
                    f"| {_pct(times, 50):.0f} | {_pct(times, 95):.0f} |"
                )
            for clients in (1, 8):
                times, wall = _concurrent(search, clients, 60)
                rows.append(
                    f"| search by image | {clients} | {len(times)} | {len(times) / wall:.1f} req/s "
                    f"| {_pct(times, 50):.0f} | {_pct(times, 95):.0f} |"
                )
            # The cost of the hops: proxy -> ingress (healthz), proxy -> ingress -> Search ->
            # database ping (readyz), against the same ping called directly in-process.
            healthz = [_timed(lambda: client.get("/healthz")) for _ in range(200)]
            readyz = [_timed(lambda: client.get("/readyz")) for _ in range(200)]
        store = Store.open(url)
        direct = []
        for _ in range(200):
            started = time.perf_counter()
            store.ping()
            direct.append(time.perf_counter() - started)
        store.close()
        med = {
            k: statistics.median(v) * 1000
            for k, v in {"healthz": healthz, "readyz": readyz, "direct": direct}.items()
        }
        rows += [
            "",
            "| no-op request | p50 ms |",
            "|---|---:|",
            f"| `Store.ping()` called directly in-process | {med['direct']:.2f} |",
            f"| `GET /healthz`: HTTP -> proxy -> Ingress | {med['healthz']:.1f} |",
            f"| `GET /readyz`: HTTP -> proxy -> Ingress -> Search -> `Store.ping()` "
            f"| {med['readyz']:.1f} |",
            "",
            f"One Ingress -> Search handle hop costs about "
            f"{med['readyz'] - med['healthz'] - med['direct']:.1f} ms (readyz - healthz - direct "
            f"ping); HTTP + proxy + Ingress about {med['healthz']:.1f} ms.",
        ]
    finally:
        stop_local()
        postgres.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    return rows
