"""A scenario's measurements, read from locust's CSV files, checked against its thresholds."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

from serve_app.loadtest.sla import Scenario, Thresholds

TOTAL = "Aggregated"  # locust's name for the row over every request
# Requests in flight when the service recovered may still fail: not counted as "after".
RECOVERY_GRACE_S = 2.0


@dataclass(frozen=True)
class RequestStats:
    """One row of locust's `_stats.csv`: a request name, or the total."""

    name: str
    requests: int
    failures: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    rps: float

    @property
    def error_rate(self) -> float:
        """Failed share of the requests; 1.0 when none was made (nothing worked)."""
        return self.failures / self.requests if self.requests else 1.0


@dataclass(frozen=True)
class HistoryPoint:
    """One second of `_stats_history.csv` (percentiles over locust's last ~10 s)."""

    t: float  # Unix time, whole seconds
    users: int
    rps: float  # locust's current rate (a ~10 s moving average)
    failures_per_s: float
    p50_ms: float | None  # None before the first request
    p95_ms: float | None
    p99_ms: float | None
    total_requests: int  # so far
    total_failures: int


@dataclass
class FaultOutcome:
    """What happened around an injected fault (times are Unix times)."""

    kind: str
    injected_at: float | None = None
    target: str = ""
    recovered_at: float | None = None
    detail: str = ""
    error: str | None = None  # the fault could not be injected
    # Requests completed (and of those failed) from the fault until recovery + grace, and after.
    during: tuple[int, int] = (0, 0)
    after: tuple[int, int] = (0, 0)

    @property
    def recovery_s(self) -> float | None:
        """Seconds from the fault until the service was whole again; None if it never was."""
        if self.injected_at is None or self.recovered_at is None:
            return None
        return self.recovered_at - self.injected_at


@dataclass
class Check:
    """One threshold: measured against its limit."""

    scenario: str
    subject: str  # "all requests" or one request name
    metric: str
    measured: float | None
    limit: float
    at_most: bool  # True: measured <= limit passes; False: measured >= limit passes
    unit: str = ""

    @property
    def passed(self) -> bool:
        if self.measured is None or math.isnan(self.measured):
            return False
        return self.measured <= self.limit if self.at_most else self.measured >= self.limit

    def measured_text(self) -> str:
        return "n/a" if self.measured is None else _fmt(self.measured, self.unit)

    def limit_text(self) -> str:
        return ("<= " if self.at_most else ">= ") + _fmt(self.limit, self.unit)


@dataclass
class ScenarioResult:
    scenario: Scenario
    total: RequestStats
    requests: dict[str, RequestStats]
    history: list[HistoryPoint]
    checks: list[Check] = field(default_factory=list)
    fault: FaultOutcome | None = None
    acknowledged: int | None = None
    lost: list[str] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)


def read_stats(prefix: Path) -> dict[str, RequestStats]:
    """`{prefix}_stats.csv` by request name; the total is under `Aggregated`."""
    rows: dict[str, RequestStats] = {}
    with open(f"{prefix}_stats.csv", newline="") as f:
        for row in csv.DictReader(f):
            rows[row["Name"]] = RequestStats(
                name=row["Name"],
                requests=int(row["Request Count"]),
                failures=int(row["Failure Count"]),
                p50_ms=_number(row["50%"]),
                p95_ms=_number(row["95%"]),
                p99_ms=_number(row["99%"]),
                rps=_number(row["Requests/s"]),
            )
    if TOTAL not in rows:
        rows[TOTAL] = RequestStats(TOTAL, 0, 0, math.nan, math.nan, math.nan, 0.0)
    return rows


def read_history(prefix: Path) -> list[HistoryPoint]:
    """The total's row of each second in `{prefix}_stats_history.csv`."""
    points: list[HistoryPoint] = []
    path = Path(f"{prefix}_stats_history.csv")
    if not path.exists():
        return points
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            if row["Name"] != TOTAL:
                continue
            seen = int(row["Total Request Count"])
            points.append(
                HistoryPoint(
                    t=float(row["Timestamp"]),
                    users=int(row["User Count"]),
                    rps=_number(row["Requests/s"]),
                    failures_per_s=_number(row["Failures/s"]),
                    p50_ms=_current(row["50%"]),
                    p95_ms=_current(row["95%"]),
                    p99_ms=_current(row["99%"]),
                    total_requests=seen,
                    total_failures=int(row["Total Failure Count"]),
                )
            )
    return points


def split_at_fault(
    fault: FaultOutcome,
    history: list[HistoryPoint],
    total: RequestStats,
    grace_s: float = RECOVERY_GRACE_S,
) -> None:
    """Count requests (and failures) from the fault until `grace_s` after recovery, and after
    that until the end, from locust's per-second running totals; stored on `fault`."""
    if fault.injected_at is None or not history:
        return
    # History has one point a second: count a boundary second on the service's side.
    before = [p for p in history if p.t <= fault.injected_at]
    start = (before[-1].total_requests, before[-1].total_failures) if before else (0, 0)
    if fault.recovered_at is None:
        fault.during = (total.requests - start[0], total.failures - start[1])
        return
    after = [p for p in history if p.t >= fault.recovered_at + grace_s]
    end = (
        (after[0].total_requests, after[0].total_failures)
        if after
        else (total.requests, total.failures)
    )
    fault.during = (end[0] - start[0], end[1] - start[1])
    fault.after = (total.requests - end[0], total.failures - end[1])


def evaluate(result: ScenarioResult) -> list[Check]:
    """Every threshold of the scenario, plus `acknowledged faces lost <= 0` when faces were
    verified; stored on the result and returned."""
    name = result.scenario.name
    checks = _threshold_checks(name, "all requests", result.total, result.scenario.thresholds)
    for request, thresholds in result.scenario.requests.items():
        stats = result.requests.get(request) or RequestStats(
            request, 0, 0, math.nan, math.nan, math.nan, 0.0
        )
        checks += _threshold_checks(name, request, stats, thresholds)
    fault = result.fault
    if fault is not None and fault.injected_at is None:
        checks.append(Check(name, fault.kind, "fault injected", None, 1.0, False))
    elif fault is not None:
        limit = result.scenario.thresholds.max_recovery_s
        if limit is None and result.scenario.fault is not None:
            limit = result.scenario.fault.recovery_timeout_s
        checks.append(
            Check(name, fault.kind, "recovery time", fault.recovery_s, limit or 0.0, True, "s")
        )
        if fault.recovered_at is not None:
            # Once the service is whole again, everything a client does right must work.
            requests, failures = fault.after
            checks.append(
                Check(
                    name,
                    f"{requests} requests after recovery",
                    "failed after recovery",
                    float(failures),
                    0.0,
                    True,
                )
            )
    if result.acknowledged is not None:
        checks.append(
            Check(
                name,
                f"{result.acknowledged} faces acknowledged",
                "acknowledged faces lost",
                float(len(result.lost)),
                0.0,
                True,
            )
        )
    result.checks = checks
    return checks


def _threshold_checks(
    scenario: str, subject: str, stats: RequestStats, limits: Thresholds
) -> list[Check]:
    checks = []
    for metric, measured, limit, at_most, unit in (
        ("p50 latency", stats.p50_ms, limits.p50_ms, True, "ms"),
        ("p95 latency", stats.p95_ms, limits.p95_ms, True, "ms"),
        ("p99 latency", stats.p99_ms, limits.p99_ms, True, "ms"),
        ("throughput", stats.rps, limits.min_rps, False, "req/s"),
        ("error rate", stats.error_rate, limits.max_error_rate, True, "%"),
    ):
        if limit is not None:
            checks.append(Check(scenario, subject, metric, measured, limit, at_most, unit))
    return checks


def _fmt(value: float, unit: str) -> str:
    if unit == "%":
        return f"{100 * value:.2f} %"
    if unit == "ms":
        return f"{value:.0f} ms"
    if unit == "req/s":
        return f"{value:.2f} req/s"
    if unit == "s":
        return f"{value:.1f} s"
    return f"{value:g}"


def _number(raw: str) -> float:
    try:
        return float(raw)
    except (TypeError, ValueError):
        return math.nan  # locust writes "N/A" for a percentile of no requests


def _current(raw: str) -> float | None:
    """A percentile of locust's last ~10 s; None while that window holds no request (locust
    writes N/A, or 0, which no HTTP round trip takes)."""
    value = _number(raw)
    return None if math.isnan(value) or value <= 0 else value
