"""PNG charts: latency percentiles and throughput over time, per scenario and per profile."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from serve_app.loadtest.results import ScenarioResult

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def scenario_chart(result: ScenarioResult, path: Path) -> Path:
    """One scenario: p50/p95/p99 (with their limits) above, throughput and errors below."""
    figure = _figure(1)
    axes = figure.subplots(2, 1, sharex=True, squeeze=False)
    _draw(result, axes[0][0], axes[1][0], legend=True)
    figure.suptitle(_title(result), fontsize=10)
    figure.savefig(path, dpi=100)
    _close(figure)
    return path


def profile_chart(results: Sequence[ScenarioResult], title: str, path: Path) -> Path:
    """Every scenario of a run, one row each: latency on the left, throughput on the right."""
    figure = _figure(len(results), wide=True)
    axes = figure.subplots(len(results), 2, squeeze=False)
    for row, result in enumerate(results):
        _draw(result, axes[row][0], axes[row][1], legend=row == 0)
        axes[row][0].set_title(_title(result), fontsize=9, loc="left")
    figure.suptitle(title, fontsize=11)
    figure.savefig(path, dpi=90)
    _close(figure)
    return path


def _figure(rows: int, wide: bool = False) -> Figure:
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    from matplotlib.figure import Figure

    height = (2.6 if wide else 3.2) * rows + (0.6 if wide else 1.2)
    return Figure(figsize=(13 if wide else 9, height), layout="constrained")


def _close(figure: Figure) -> None:
    figure.clear()


def _title(result: ScenarioResult) -> str:
    s = result.scenario
    verdict = "PASS" if result.passed else "FAIL"
    name = s.name if s.name == s.kind else f"{s.name} ({s.kind})"
    text = (
        f"{name}: {s.users} users, {s.duration_s:.0f} s - "
        f"{result.total.requests} requests, {result.total.rps:.2f} req/s - {verdict}"
    )
    if result.fault is not None:
        text += f" - fault: {result.fault.kind}"
    return text


def _draw(result: ScenarioResult, latency: Axes, throughput: Axes, legend: bool) -> None:
    points = result.history
    origin = points[0].t if points else 0.0
    t = [p.t - origin for p in points]
    limits = result.scenario.thresholds
    for label, values, limit, color in (
        ("p50", [p.p50_ms for p in points], limits.p50_ms, "tab:blue"),
        ("p95", [p.p95_ms for p in points], limits.p95_ms, "tab:orange"),
        ("p99", [p.p99_ms for p in points], limits.p99_ms, "tab:red"),
    ):
        latency.plot(
            t,
            [v if v is not None else float("nan") for v in values],
            label=label,
            color=color,
            linewidth=1.4,
        )
        if limit is not None:
            latency.axhline(limit, color=color, linestyle="--", linewidth=0.8, alpha=0.7)
    latency.set_ylabel("latency, ms\n(last 10 s)")
    latency.set_ylim(bottom=0)
    latency.grid(alpha=0.3)
    throughput.plot(t, [p.rps for p in points], label="requests/s", color="tab:green")
    throughput.plot(t, [p.failures_per_s for p in points], label="failures/s", color="tab:red")
    if limits.min_rps is not None:
        throughput.axhline(limits.min_rps, color="tab:green", linestyle="--", linewidth=0.8)
    throughput.set_ylabel("per second\n(last 10 s)")
    throughput.set_xlabel("seconds since start")
    throughput.set_ylim(bottom=0)
    throughput.grid(alpha=0.3)
    users = throughput.twinx()
    users.step(t, [p.users for p in points], where="post", color="grey", alpha=0.5, label="users")
    users.set_ylabel("users", color="grey")
    users.set_ylim(bottom=0)
    fault = result.fault
    if fault is not None and fault.injected_at is not None:
        for axis in (latency, throughput):
            axis.axvline(fault.injected_at - origin, color="black", linewidth=1.0)
            if fault.recovered_at is not None:
                axis.axvspan(
                    fault.injected_at - origin,
                    fault.recovered_at - origin,
                    color="grey",
                    alpha=0.15,
                )
    if legend:
        latency.legend(loc="upper left", fontsize=8)
        lines, labels = throughput.get_legend_handles_labels()
        more, more_labels = users.get_legend_handles_labels()
        throughput.legend(lines + more, labels + more_labels, loc="upper left", fontsize=8)
