"""`faceserve loadtest`: run an SLA profile with locust and say whether it holds.

Starts the service (unless `--host`), seeds a collection, runs each scenario as a headless
locust subprocess (never in-process: gevent's monkey-patching would break Ray and our code),
injects the scenario's fault if it has one, checks every acknowledged face is still there,
writes CSV, locust's HTML report, PNG charts, results.json and report.md, prints a pass/fail
table, and exits 0 (every threshold met), 1 (a miss), 2 (bad SLA file or arguments) or
3 (could not run: the service did not start, locust failed, ...).
"""

from __future__ import annotations

import datetime
import math
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx

from serve_app.loadtest.photos import build_payloads, shared_faces_dir
from serve_app.loadtest.results import (
    FaultOutcome,
    ScenarioResult,
    evaluate,
    read_history,
    read_stats,
    split_at_fault,
)
from serve_app.loadtest.seed import (
    SeedError,
    delete_collection,
    seed_collection,
    verify_acknowledged,
    wait_ready,
)
from serve_app.loadtest.sla import Profile, Scenario, SlaFileError, format_duration, load_sla
from serve_app.loadtest.traffic import (
    ENV_ACK_LOG,
    ENV_MANIFEST,
    ENV_WAIT,
    AckLog,
    RunManifest,
    read_ack_log,
)

EXIT_PASSED = 0
EXIT_SLA_MISSED = 1
EXIT_USAGE = 2
EXIT_COULD_NOT_RUN = 3
# Users finish the request in hand when the time is up (a face acknowledged is logged).
STOP_TIMEOUT_S = 30


class CouldNotRun(RuntimeError):
    """The load test could not be carried out (as opposed to: it ran and missed)."""


@dataclass
class RunOptions:
    sla: Path
    profile: str | None = None
    host: str | None = None
    scenarios: tuple[str, ...] = ()
    output: Path | None = None
    locustfile: Path | None = None
    ray_address: str | None = None
    benchmarks: Path | None = None
    chart_dir: Path | None = None
    serve_config: Path | None = None
    num_cpus: int | None = None
    keep_collection: bool = False
    ready_timeout_s: float = 120.0
    command: str = ""


def missing_tools() -> list[str]:
    """The `loadtest` extra's packages that are not installed."""
    import importlib.util

    return [name for name in ("locust", "matplotlib") if importlib.util.find_spec(name) is None]


def run(options: RunOptions) -> int:
    """Run the profile; returns the exit status (see the module docstring)."""
    missing = missing_tools()
    if missing:
        _say(
            f"error: {', '.join(missing)} not installed; load tests need the `loadtest` extra: "
            "pip install 'faceserve[loadtest]'"
        )
        return EXIT_COULD_NOT_RUN
    try:
        profile = _select(options)
    except SlaFileError as exc:
        _say(f"error: {exc.message}")
        return EXIT_USAGE
    locustfile = options.locustfile or options.sla.parent / "locustfile.py"
    if not locustfile.is_file():
        _say(f"error: no locustfile at {locustfile} (--locustfile)")
        return EXIT_USAGE
    output = options.output or Path("loadtest-results") / (
        f"{profile.name}-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    )
    output.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="faceserve-loadtest-"))
    service = None
    started = _clock["start"] = time.monotonic()
    _say(
        f"faceserve loadtest: profile {profile.name!r}, {len(profile.scenarios)} scenario(s), "
        f"{profile.load_seconds:.0f} s of load; report in {output}"
    )
    try:
        payloads = build_payloads(profile.payloads, work / "payloads", shared_faces_dir())
        _say(f"  uploads: {payloads.summary()}")
        if options.host:
            base_url, target = options.host.rstrip("/"), options.host
        else:
            from serve_app.loadtest.service import LocalService

            _say("  starting the service (Ray Serve, embedded PostgreSQL) …")
            service = LocalService(options.serve_config, options.num_cpus)
            base_url = service.start()
            target = f"a local service started by the runner ({base_url})"
        faults = sorted({s.fault.kind for s in profile.scenarios if s.fault})
        if faults:
            _prepare_faults(faults, options.ray_address)
        ack_path = output / "acknowledged.jsonl"
        ack_path.unlink(missing_ok=True)
        collection = (
            f"loadtest-{datetime.datetime.now().strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:4]}"
        )
        with httpx.Client(base_url=base_url, timeout=120) as client:
            wait_ready(client, options.ready_timeout_s)
            seeded = time.monotonic()
            with AckLog(ack_path) as seed_log:
                manifest = seed_collection(client, collection, payloads, seed_log)
            _say(
                f"  seeded collection {collection!r}: {read_ack_log(ack_path).count} faces; "
                f"{len(manifest.search_queries)} query photos find theirs "
                f"({time.monotonic() - seeded:.0f} s)"
            )
        manifest_path = work / "manifest.json"
        manifest.save(manifest_path)
        results = []
        for scenario in profile.scenarios:
            results.append(
                _run_scenario(
                    scenario, base_url, locustfile, manifest, manifest_path, ack_path, output
                )
            )
        if not options.keep_collection:
            with httpx.Client(base_url=base_url, timeout=60) as client:
                delete_collection(client, collection)
    except SlaFileError as exc:
        _say(f"error: {exc.message}")
        return EXIT_USAGE
    except (CouldNotRun, SeedError, FileNotFoundError) as exc:
        _say(f"error: could not run the load test: {exc}")
        return EXIT_COULD_NOT_RUN
    except Exception as exc:  # noqa: BLE001 - e.g. the service failed to start
        _say(f"error: could not run the load test: {type(exc).__name__}: {exc}")
        return EXIT_COULD_NOT_RUN
    finally:
        if service is not None:
            _say("  stopping the service …")
            service.stop()
        shutil.rmtree(work, ignore_errors=True)

    return _report(options, profile, results, output, payloads.summary(), target, started)


def _select(options: RunOptions) -> Profile:
    sla = load_sla(options.sla)
    profile = sla.profile(options.profile)
    if options.scenarios:
        unknown = sorted(set(options.scenarios) - {s.name for s in profile.scenarios})
        if unknown:
            raise SlaFileError(
                f"profile {profile.name!r} has no scenario {', '.join(unknown)} "
                f"(it has: {', '.join(s.name for s in profile.scenarios)})"
            )
        profile = Profile(
            profile.name,
            profile.description,
            profile.payloads,
            tuple(s for s in profile.scenarios if s.name in options.scenarios),
        )
    return profile


def _prepare_faults(kinds: list[str], ray_address: str | None) -> None:
    from serve_app.loadtest.faults import FaultUnavailable, check_available, connect_cluster

    try:
        connect_cluster(ray_address)
        for kind in kinds:
            check_available(kind)
    except FaultUnavailable as exc:
        raise SlaFileError(f"{exc} (or leave the fault scenarios out with --scenario)") from None


def _run_scenario(
    scenario: Scenario,
    base_url: str,
    locustfile: Path,
    manifest: RunManifest,
    manifest_path: Path,
    ack_path: Path,
    output: Path,
) -> ScenarioResult:
    prefix = output / scenario.name
    for stale in output.glob(f"{scenario.name}_*.csv"):
        stale.unlink()
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(locustfile),
        "--headless",
        "--host",
        base_url,
        "-u",
        str(scenario.users),
        "-r",
        f"{scenario.spawn_rate:g}",
        "-t",
        format_duration(scenario.duration_s),
        "--stop-timeout",
        str(STOP_TIMEOUT_S),
        "--csv",
        str(prefix),
        "--csv-full-history",
        "--html",
        f"{prefix}.html",
        "--exit-code-on-error",
        "0",
        "--loglevel",
        "WARNING",
        "--only-summary",
        scenario.user_class,
    ]
    env = os.environ | {
        ENV_MANIFEST: str(manifest_path),
        ENV_ACK_LOG: str(ack_path),
        ENV_WAIT: f"{scenario.wait_s[0]},{scenario.wait_s[1]}",
    }
    _say(
        f"  {scenario.name}: {scenario.users} {scenario.kind} users for "
        f"{format_duration(scenario.duration_s)}"
        + (f", {scenario.fault.kind} at {scenario.fault.at_s:.0f} s" if scenario.fault else "")
        + " …"
    )
    log_path = output / f"{scenario.name}.locust.log"
    fault_thread = None
    fault_box: list[FaultOutcome] = []
    with log_path.open("w") as log:
        log.write(shlex.join(command) + "\n")
        log.flush()
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        if scenario.fault is not None:
            fault_thread = threading.Thread(
                target=_fault_at,
                args=(scenario, base_url, manifest, process, fault_box),
                daemon=True,
            )
            fault_thread.start()
        limit = scenario.duration_s + STOP_TIMEOUT_S + 120
        try:
            code = process.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise CouldNotRun(f"locust ran past {limit:.0f} s for {scenario.name}") from None
    if fault_thread is not None:
        fault_thread.join()
    if code != 0 or not Path(f"{prefix}_stats.csv").exists():
        tail = "\n".join(log_path.read_text().splitlines()[-15:])
        raise CouldNotRun(f"locust exited with {code} for {scenario.name}:\n{tail}")
    stats = read_stats(prefix)
    result = ScenarioResult(
        scenario=scenario,
        total=stats.pop("Aggregated"),
        requests=stats,
        history=read_history(prefix),
        fault=fault_box[0] if fault_box else None,
        files={
            "stats": Path(f"{prefix}_stats.csv"),
            "history": Path(f"{prefix}_stats_history.csv"),
            "html": Path(f"{prefix}.html"),
            "log": log_path,
        },
    )
    if scenario.kind in ("index", "mixed") or scenario.fault is not None:
        acknowledged = read_ack_log(ack_path)
        result.acknowledged = acknowledged.count
        try:
            with httpx.Client(base_url=base_url, timeout=120) as client:
                wait_ready(client)
                checked = verify_acknowledged(client, acknowledged)
            result.lost = checked.missing + checked.search_failures
        except (SeedError, httpx.HTTPError) as exc:
            # A service that cannot even list its faces has lost them, as far as users know.
            result.lost = [f"cannot check: {exc}"]
    if result.fault is not None:
        split_at_fault(result.fault, result.history, result.total)
    evaluate(result)
    from serve_app.loadtest.chart import scenario_chart

    result.files["chart"] = scenario_chart(result, Path(f"{prefix}.png"))
    t = result.total
    _say(
        f"    {t.requests} requests, {t.rps:.2f} req/s, p50 {_ms(t.p50_ms)}, p95 {_ms(t.p95_ms)}, "
        f"{t.failures} failed"
        + (f"; {result.fault.detail}" if result.fault else "")
        + f" - {'PASS' if result.passed else 'FAIL'}"
    )
    return result


def _fault_at(
    scenario: Scenario,
    base_url: str,
    manifest: RunManifest,
    process: subprocess.Popen,
    box: list[FaultOutcome],
) -> None:
    from serve_app.loadtest.faults import inject_and_watch

    assert scenario.fault is not None
    started = time.monotonic()
    while time.monotonic() - started < scenario.fault.at_s:
        if process.poll() is not None:
            box.append(FaultOutcome(scenario.fault.kind, error="locust ended before the fault"))
            return
        time.sleep(0.2)
    box.append(
        inject_and_watch(scenario.fault.kind, base_url, manifest, scenario.fault.recovery_timeout_s)
    )


def _report(
    options: RunOptions,
    profile: Profile,
    results: list[ScenarioResult],
    output: Path,
    payloads: str,
    target: str,
    started: float,
) -> int:
    from serve_app.loadtest.report import RunInfo, checks_table, machine, write_reports

    info = RunInfo(
        profile=profile.name,
        command=options.command or f"faceserve loadtest --sla {options.sla}",
        date=datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        target=target,
        payloads=payloads,
        machine=machine(),
    )
    written = write_reports(info, results, output, options.benchmarks, options.chart_dir)
    if options.benchmarks is not None:
        _say(f"  wrote the {profile.name!r} section of {options.benchmarks} and {written}")
    print()
    print(checks_table(results))
    print()
    failed = [c for r in results for c in r.checks if not c.passed]
    total = sum(len(r.checks) for r in results)
    verdict = (
        f"SLA met: {total} thresholds passed"
        if not failed
        else f"SLA missed: {len(failed)} of {total} thresholds failed"
    )
    elapsed = time.monotonic() - started
    print(f"{verdict} (profile {profile.name!r}, {elapsed:.0f} s). Report: {output}/report.md")
    return EXIT_SLA_MISSED if failed else EXIT_PASSED


def _ms(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.0f} ms"


_clock = {"start": time.monotonic()}


def _say(message: str) -> None:
    """Progress on stderr; indented lines carry the seconds since the run started."""
    if message.startswith("  "):
        message = f"[{time.monotonic() - _clock['start']:4.0f} s]{message}"
    print(message, file=sys.stderr, flush=True)
