"""An album indexed end to end through the job API, against one photo per HTTP request.

Starts the real service (Ray Serve, the Jobs deployment and its workers, an embedded
PostgreSQL) in this process and, in one run:
1. indexes the album's first `--http-count` photos one per request (4 client threads), for
   the ratio;
2. submits the whole album as one job (`file://` source) and follows it to the end, while a
   client searches by image once a second (open loop: live traffic during the job);
3. samples the memory of every process of the service (RSS, summed) throughout.

    python -m bench.album_jobs --album /tmp/album10k --count 10000 [--benchmarks BENCHMARKS.md]

The album (1-3 MP JPEGs with 1-6 LFW faces each) is written by `python -m bench.album`
when missing; it stays outside the repository.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import psutil

from bench.album import write_album
from bench.report import replace_section
from serve_app.app import SERVE_CONFIG
from serve_app.config import Settings
from serve_app.server import start_local, stop_local
from serve_app.store import EmbeddedPostgres

ADMIN_KEY = "bench-admin-" + "b" * 40
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
TITLE = "Album indexing jobs (10,000 photos through the job API)"
FINAL = ("succeeded", "failed", "cancelled")


class MemorySampler(threading.Thread):
    """Peak of the summed RSS of this process and all its descendants (Ray, PostgreSQL)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = 0
        self._halt = threading.Event()

    def run(self) -> None:
        me = psutil.Process()
        while not self._halt.wait(1.0):
            total = 0
            for process in [me, *me.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    total += process.memory_info().rss
            self.peak = max(self.peak, total)

    def stop(self) -> None:
        self._halt.set()


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values) * 1000, q)) if values else float("nan")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_baseline(client: httpx.Client, photos: list[Path], clients: int = 4) -> tuple[float, int]:
    """Images/s indexing `photos` one per request; and the faces indexed."""
    client.post("/v1/collections", json={"name": "http"}).raise_for_status()
    faces = []

    def index(path: Path) -> None:
        r = client.post(
            "/v1/collections/http/faces",
            files={"image": (path.name, path.read_bytes())},
            data={"external_image_id": path.name},
        )
        r.raise_for_status()
        faces.append(len(r.json()["indexed"]))

    for path in photos[:4]:  # warm every replica
        index(path)
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(index, photos[4:]))
    return (len(photos) - 4) / (time.perf_counter() - started), sum(faces)


def run(album: Path, count: int, http_count: int, model_dir: Path) -> list[str]:
    paths = write_album(album, count)
    data_dir = Path(tempfile.mkdtemp(prefix="faceserve-bench-jobs-"))
    postgres = EmbeddedPostgres(data_dir / "pg")
    url = postgres.start()
    port = _free_port()
    settings = Settings.from_env(
        model_dir=model_dir,
        data_dir=data_dir,
        database_url=url,
        port=port,
        job_folder_roots=str(album.parent),
        admin_key=ADMIN_KEY,
    )
    memory = MemorySampler()
    memory.start()
    try:
        print("album jobs: starting the service …", file=sys.stderr, flush=True)
        start_local(settings, SERVE_CONFIG, num_cpus=2)
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=300, headers=AUTH) as client:
            print(f"album jobs: {http_count} photos one per request …", file=sys.stderr)
            http_rate, http_faces = http_baseline(client, paths[:http_count])
            client.post("/v1/collections", json={"name": "album"}).raise_for_status()
            query = paths[0].read_bytes()
            client.post("/v1/collections/album/search", files={"image": ("q.jpg", query)})

            print(f"album jobs: the album ({count} photos) as one job …", file=sys.stderr)
            submitted = time.monotonic()
            r = client.post("/v1/collections/album/jobs", json={"source": album.as_uri()})
            r.raise_for_status()
            job_id = r.json()["job_id"]
            first_done = None
            latencies: list[float] = []
            stop_search = threading.Event()

            def search_loop() -> None:
                with httpx.Client(base_url=base, timeout=60, headers=AUTH) as searcher:
                    while not stop_search.is_set():
                        tick = time.monotonic()
                        res = searcher.post(
                            "/v1/collections/album/search", files={"image": ("q.jpg", query)}
                        )
                        if res.status_code == 200:
                            latencies.append(time.monotonic() - tick)
                        stop_search.wait(max(0.0, 1.0 - (time.monotonic() - tick)))

            searcher = threading.Thread(target=search_loop, daemon=True)
            searcher.start()
            last_print = 0.0
            while True:
                job = client.get(f"/v1/jobs/{job_id}").json()
                processed = sum(job["images"][k] for k in ("done", "skipped", "failed"))
                if first_done is None and processed:
                    first_done = time.monotonic() - submitted
                if time.monotonic() - last_print > 30:
                    last_print = time.monotonic()
                    print(
                        f"  {processed}/{job['images']['total']} "
                        f"{job['images_per_second']} img/s, ETA {job['eta_seconds']} s",
                        file=sys.stderr,
                    )
                if job["state"] in FINAL:
                    break
                time.sleep(1.0)
            stop_search.set()
            searcher.join()
            wall = (
                datetime.datetime.fromisoformat(job["finished_at"])
                - datetime.datetime.fromisoformat(job["created_at"])
            ).total_seconds()
    finally:
        memory.stop()
        stop_local()
        postgres.stop()
        shutil.rmtree(data_dir, ignore_errors=True)

    images = job["images"]
    rate = count / wall
    return [
        "| measure | value |",
        "|---|---|",
        f"| album | {count:,} JPEGs, 1.1-3.0 MP, 1-6 LFW faces each (`bench.album`) |",
        f"| job state | {job['state']}: {images['done']:,} indexed, {images['skipped']} skipped, "
        f"{images['failed']} failed; {job['faces_indexed']:,} faces |",
        f"| submitted to finished | **{wall:.0f} s ({wall / 60:.1f} min)** |",
        f"| album job throughput | **{rate:.1f} images/s** |",
        f"| one photo per HTTP request, 4 clients ({http_count:,} photos, "
        f"{http_faces:,} faces) | {http_rate:.1f} images/s |",
        f"| job / per-request ratio | {rate / http_rate:.2f}x |",
        f"| first image done after submission | {first_done:.1f} s |",
        f"| search by image during the job (1 req/s, {len(latencies)} requests) | "
        f"p50 {_pct(latencies, 50):.0f} ms, p95 {_pct(latencies, 95):.0f} ms |",
        f"| peak memory, all processes of the service | {memory.peak / 2**30:.2f} GiB |",
    ]


def main() -> None:
    from bench.run import machine

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--album", type=Path, default=Path(tempfile.gettempdir()) / "album10k")
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--http-count", type=int, default=1_000)
    parser.add_argument("--benchmarks", type=Path, help="write the section into this file")
    args = parser.parse_args()
    settings = Settings.from_env()
    rows = run(args.album, args.count, args.http_count, settings.model_dir)
    load = ", ".join(f"{x:.1f}" for x in psutil.getloadavg())
    body = "\n".join(
        [
            f"- command: `python -m bench.album_jobs {' '.join(sys.argv[1:])}`",
            f"- machine: {machine()}",
            f"- date: {datetime.date.today()}; load average at the end: {load} (the job, its "
            "searcher and the HTTP clients share the 2 cores with the service)",
            "",
            *rows,
        ]
    )
    print(body)
    if args.benchmarks:
        text = args.benchmarks.read_text() if args.benchmarks.exists() else "# Benchmarks\n"
        args.benchmarks.write_text(replace_section(text, TITLE, body))


if __name__ == "__main__":
    main()
