"""The pass/fail table (terminal and Markdown), results.json, and the BENCHMARKS.md section."""

from __future__ import annotations

import json
import math
import os
import platform
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from serve_app.loadtest.results import RECOVERY_GRACE_S, Check, ScenarioResult


@dataclass(frozen=True)
class RunInfo:
    """What a report says about the run as a whole."""

    profile: str
    command: str
    date: str
    target: str  # "a local service started by the runner" or the --host URL
    payloads: str
    machine: str


def machine() -> str:
    """Cores, CPU model and memory of this machine (where locust runs)."""
    cpu = platform.processor() or "unknown CPU"
    memory = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f", {int(line.split()[1]) / 2**20:.0f} GiB RAM"
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({cpu}){memory}, {platform.system()} {platform.machine()}"


def checks_table(results: Sequence[ScenarioResult]) -> str:
    """The terminal table: one row per threshold, PASS/FAIL."""
    header = ("scenario", "subject", "threshold", "measured", "limit", "result")
    rows = [header] + [_row(check) for result in results for check in result.checks]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def checks_markdown(results: Sequence[ScenarioResult]) -> list[str]:
    rows = [
        "| scenario | subject | threshold | measured | limit | result |",
        "|---|---|---|---:|---:|---|",
    ]
    for result in results:
        for check in result.checks:
            cells = _row(check)
            verdict = "PASS" if check.passed else "**FAIL**"
            rows.append("| " + " | ".join([*cells[:5], verdict]) + " |")
    return rows


def summary_markdown(results: Sequence[ScenarioResult]) -> list[str]:
    """One row per scenario: load, requests, throughput, percentiles, errors, verdict."""
    rows = [
        "| scenario | users | duration | requests | req/s | p50 ms | p95 ms | p99 ms | errors "
        "| result |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        s, t = r.scenario, r.total
        rows.append(
            f"| {s.name}{' (fault: ' + r.fault.kind + ')' if r.fault else ''} | {s.users} "
            f"| {s.duration_s:.0f} s | {t.requests} | {t.rps:.2f} | {_ms(t.p50_ms)} "
            f"| {_ms(t.p95_ms)} | {_ms(t.p99_ms)} | {t.failures} ({100 * t.error_rate:.2f} %) "
            f"| {'PASS' if r.passed else '**FAIL**'} |"
        )
    return rows


def notes_markdown(results: Sequence[ScenarioResult]) -> list[str]:
    """Faults and lost faces, in words."""
    notes = []
    for r in results:
        if r.fault is not None:
            f = r.fault
            if f.error:
                notes.append(f"- `{r.scenario.name}`: {f.error}.")
            else:
                took = (
                    f"whole again {f.recovery_s:.1f} s later"
                    if f.recovery_s is not None
                    else "the service did not recover"
                )
                notes.append(
                    f"- `{r.scenario.name}`: {f.detail}; {took}. From the fault until "
                    f"{RECOVERY_GRACE_S:.0f} s after recovery: {f.during[1]} of {f.during[0]} "
                    f"requests failed; after it: {f.after[1]} of {f.after[0]}."
                )
        if r.acknowledged is not None:
            lost = ", ".join(r.lost[:5]) + (" …" if len(r.lost) > 5 else "")
            notes.append(
                f"- `{r.scenario.name}`: {r.acknowledged} faces acknowledged as indexed (seeded "
                f"and during the run, minus those users deleted); "
                + (f"**{len(r.lost)} lost**: {lost}." if r.lost else "all found afterwards.")
            )
    return notes


def report_markdown(info: RunInfo, results: Sequence[ScenarioResult], chart: str | None) -> str:
    """The run as Markdown (report.md, and the BENCHMARKS.md section's body)."""
    lines = [
        f"- command: `{info.command}`",
        f"- date: {info.date}",
        f"- machine: {info.machine}; target: {info.target}",
        f"- uploads: {info.payloads}",
        "- locust runs on the same machine as the service and competes with it for CPU: "
        "on 2 cores the figures are pessimistic.",
        "",
        *summary_markdown(results),
        "",
        *checks_markdown(results),
    ]
    notes = notes_markdown(results)
    if notes:
        lines += ["", *notes]
    if chart:
        lines += ["", f"![latency percentiles and throughput over time]({chart})"]
    return "\n".join(lines) + "\n"


def results_json(info: RunInfo, results: Sequence[ScenarioResult], path: Path) -> Path:
    """Everything measured, machine-readable."""
    body = {
        "profile": info.profile,
        "command": info.command,
        "date": info.date,
        "machine": info.machine,
        "target": info.target,
        "passed": all(r.passed for r in results),
        "scenarios": [
            {
                "name": r.scenario.name,
                "kind": r.scenario.kind,
                "users": r.scenario.users,
                "duration_s": r.scenario.duration_s,
                "requests": r.total.requests,
                "failures": r.total.failures,
                "rps": r.total.rps,
                "p50_ms": r.total.p50_ms,
                "p95_ms": r.total.p95_ms,
                "p99_ms": r.total.p99_ms,
                "passed": r.passed,
                "fault": None
                if r.fault is None
                else {
                    "kind": r.fault.kind,
                    "target": r.fault.target,
                    "detail": r.fault.detail,
                    "error": r.fault.error,
                    "recovery_s": r.fault.recovery_s,
                },
                "acknowledged_faces": r.acknowledged,
                "lost_faces": r.lost,
                "checks": [
                    {
                        "subject": c.subject,
                        "metric": c.metric,
                        "measured": c.measured,
                        "limit": c.limit,
                        "passed": c.passed,
                    }
                    for c in r.checks
                ],
                "files": {k: str(v) for k, v in r.files.items()},
            }
            for r in results
        ],
    }
    path.write_text(json.dumps(_finite(body), indent=2))
    return path


def write_reports(
    info: RunInfo,
    results: Sequence[ScenarioResult],
    output: Path,
    benchmarks: Path | None = None,
    chart_dir: Path | None = None,
) -> Path:
    """`PROFILE.png`, `results.json` and `report.md` in `output`; with `benchmarks`, also the
    profile's section of that file and its chart in `chart_dir` (default: docs/loadtest beside
    it). Returns the chart the section links to (or the report's)."""
    from serve_app.loadtest.chart import profile_chart

    chart = profile_chart(
        results,
        f"faceserve load test, profile {info.profile!r} ({info.date})",
        output / f"{info.profile}.png",
    )
    results_json(info, results, output / "results.json")
    (output / "report.md").write_text(
        f"# Load test: profile `{info.profile}`\n\n" + report_markdown(info, results, chart.name)
    )
    if benchmarks is None:
        return chart
    chart_dir = chart_dir or benchmarks.parent / "docs" / "loadtest"
    chart_dir.mkdir(parents=True, exist_ok=True)
    committed = Path(shutil.copyfile(chart, chart_dir / f"{info.profile}.png"))
    link = os.path.relpath(committed, benchmarks.parent)
    document = benchmarks.read_text() if benchmarks.exists() else ""
    body = report_markdown(info, results, link)
    benchmarks.write_text(replace_section(document, info.profile, section(info.profile, body)))
    return committed


# -- BENCHMARKS.md ------------------------------------------------------------------------

_SECTION = re.compile(
    r"<!-- loadtest:(?P<name>[\w.-]+):begin -->.*?<!-- loadtest:(?P=name):end -->\n?", re.S
)


def section(profile: str, body: str) -> str:
    """A BENCHMARKS.md section for `profile`, between markers `bench.run` keeps."""
    return (
        f"<!-- loadtest:{profile}:begin -->\n"
        f"## Load tests: profile `{profile}` (locust against the running service)\n\n"
        f"{body.rstrip()}\n"
        f"<!-- loadtest:{profile}:end -->\n"
    )


def replace_section(document: str, profile: str, new_section: str) -> str:
    """`document` with its section for `profile` replaced (or appended)."""
    for match in _SECTION.finditer(document):
        if match.group("name") == profile:
            return document[: match.start()] + new_section + document[match.end() :]
    return document.rstrip("\n") + "\n\n" + new_section


def load_test_sections(document: str) -> str:
    """Every load-test section of `document`, in order (for `bench.run` to carry over)."""
    return "\n".join(match.group(0).rstrip("\n") + "\n" for match in _SECTION.finditer(document))


def _row(check: Check) -> tuple[str, str, str, str, str, str]:
    return (
        check.scenario,
        check.subject,
        check.metric,
        check.measured_text(),
        check.limit_text(),
        "PASS" if check.passed else "FAIL",
    )


def _ms(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.0f}"  # NaN: no requests


def _finite(value: object) -> object:
    """NaN (a percentile of no requests) as null: strict JSON has no NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
