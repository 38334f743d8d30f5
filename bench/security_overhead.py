"""What authentication + rate limiting + audit cost per request (REST v1, in one run).

Two copies of the REST app over one embedded PostgreSQL, served by uvicorn on 127.0.0.1 in a
process of their own (as an Ingress replica is; the client is this process): one
open (no AccessControl), one as deployed (a bearer key looked up through the 0.5 s cache,
a token taken from the key's bucket in PostgreSQL, an audit row queued for writes and
flushed in batches). One client sends small requests to both on one keep-alive connection
each, in alternating blocks of 50.

    .venv/bin/python -m bench.security_overhead [--requests 400]
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import uvicorn

from serve_app.api import build_rest_app
from serve_app.service.access import AccessControl, configured_keys
from serve_app.service.ports import LocalStorage
from serve_app.service.services import Services
from serve_app.store import EmbeddedPostgres, Store
from serve_app.store.database import create_engine_for
from serve_app.store.security import SecurityStore

KEY = "bench-admin-" + "b" * 40
# Limits high enough never to refuse, so the bucket statement still runs on every request.
NEVER = {"admin": 1e9, "anonymous": 1e9}


class _NoPipeline:
    """The routes measured here run no model."""

    model_version = "bench"
    calibration = None


def _serve_both(url: str, ports: tuple[int, int]) -> None:
    """In a process of its own (as an Ingress replica is): the open and the secured app."""
    import asyncio

    store = Store(create_engine_for(url))
    security = SecurityStore.open(url, migrated=True)
    services = Services.build(LocalStorage(store), {"none": _NoPipeline()}, "none")  # type: ignore[dict-item]
    access = AccessControl(security, configured=configured_keys(KEY, {}), rate_limits=NEVER)
    apps = (build_rest_app(services), build_rest_app(services, access=access))
    servers = [
        uvicorn.Server(
            uvicorn.Config(a, host="127.0.0.1", port=p, log_level="warning", access_log=False)
        )
        for a, p in zip(apps, ports, strict=True)
    ]

    async def run() -> None:
        await asyncio.gather(*(s.serve() for s in servers))

    asyncio.run(run())


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz").status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not start")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400)
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="faceserve-bench-auth-"))
    postgres = EmbeddedPostgres(data_dir / "pg")
    url = postgres.start()
    store = Store.open(url)
    store.create_collection("bench", "bench", 128)
    store.close()
    ports = (_free_port(), _free_port())
    server = multiprocessing.get_context("spawn").Process(
        target=_serve_both, args=(url, ports), daemon=True
    )
    server.start()
    try:
        open_url, auth_url = (f"http://127.0.0.1:{p}" for p in ports)
        _wait(open_url)
        _wait(auth_url)
        headers = {"Authorization": f"Bearer {KEY}"}
        clients = {
            "open": httpx.Client(base_url=open_url),
            "auth": httpx.Client(base_url=auth_url, headers=headers),
        }
        requests = {
            "GET /v1/collections/bench (read: key + bucket)": lambda c: c.get(
                "/v1/collections/bench"
            ),
            "POST /v1/collections/bench/persons (write: key + bucket + audit row)": lambda c: (
                c.post("/v1/collections/bench/persons", json={"person_id": uuid.uuid4().hex})
            ),
        }
        rows = []
        for label, call in requests.items():
            times: dict[str, list[float]] = {"open": [], "auth": []}
            # Blocks of 50 per app, alternating: an audit row written after one answer then
            # delays the same app's next request, not the other app's.
            for block in range(args.requests // 50 + 1):
                for mode, client in clients.items():
                    for _ in range(50):
                        started = time.perf_counter()
                        r = call(client)
                        elapsed = time.perf_counter() - started
                        assert r.status_code < 300, r.text
                        if block > 0:  # the first block warms up
                            times[mode].append(elapsed * 1000)
            p50 = {m: statistics.median(t) for m, t in times.items()}
            rows.append((label, p50["open"], p50["auth"], p50["auth"] - p50["open"]))
        print(f"{args.requests} requests per app and request, one run (p50, ms):")
        print("| request | open | auth + rate limit + audit | cost |")
        print("|---|---:|---:|---:|")
        for label, a, b, d in rows:
            print(f"| `{label}` | {a:.2f} | {b:.2f} | {d:+.2f} |")
    finally:
        server.terminate()
        server.join(10)
        postgres.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
