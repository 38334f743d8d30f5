"""Reading locust's CSVs, judging thresholds, and the BENCHMARKS.md sections."""

from __future__ import annotations

import math
from pathlib import Path

from serve_app.loadtest.report import checks_table, load_test_sections, replace_section, section
from serve_app.loadtest.results import (
    FaultOutcome,
    HistoryPoint,
    ScenarioResult,
    evaluate,
    read_stats,
    split_at_fault,
)
from serve_app.loadtest.sla import parse_sla

HEADER = (
    "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,"
    "Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,"
    "50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%"
)


def stats_csv(tmp_path: Path, rows: list[str]) -> Path:
    prefix = tmp_path / "run"
    Path(f"{prefix}_stats.csv").write_text("\n".join([HEADER, *rows]) + "\n")
    return prefix


def scenario(thresholds: dict, **extra: object):  # noqa: ANN201
    body = {"users": 2, "spawn_rate": 1, "duration": "60s", "thresholds": thresholds} | extra
    return parse_sla({"profiles": {"p": {"scenarios": {"mixed": body}}}}).profile("p").scenarios[0]


def test_thresholds_pass_and_fail_on_what_locust_measured(tmp_path: Path) -> None:
    prefix = stats_csv(
        tmp_path,
        [
            "POST,search,90,0,400,420,200,900,100,1.5,0,400,450,500,520,600,700,800,900,900,900,900",
            "POST,index,10,1,600,650,300,2000,100,0.2,0.02,600,650,700,720,800,1900,2000,2000,"
            "2000,2000,2000",
            ",Aggregated,100,1,420,440,200,2000,100,1.7,0.02,420,460,510,530,620,800,1000,1900,"
            "2000,2000,2000",
        ],
    )
    stats = read_stats(prefix)
    s = scenario(
        {"p50_ms": 500, "p95_ms": 750, "min_rps": 2.0, "max_error_rate": 0},
        requests={"index": {"p95_ms": 2500}, "search": {"p99_ms": 800}},
    )
    result = ScenarioResult(s, stats.pop("Aggregated"), stats, [])
    verdicts = {(c.subject, c.metric): c.passed for c in evaluate(result)}
    assert verdicts == {
        ("all requests", "p50 latency"): True,  # 420 <= 500
        ("all requests", "p95 latency"): False,  # 800 > 750
        ("all requests", "throughput"): False,  # 1.7 < 2.0
        ("all requests", "error rate"): False,  # 1 % > 0
        ("index", "p95 latency"): True,
        ("search", "p99 latency"): False,  # 900 > 800
    }
    assert not result.passed
    table = checks_table([result])
    assert "800 ms" in table and "<= 750 ms" in table and "FAIL" in table


def test_a_scenario_without_requests_fails(tmp_path: Path) -> None:
    prefix = stats_csv(
        tmp_path, [",Aggregated,0,0,0,0,0,0,0,0,0,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A"]
    )
    stats = read_stats(prefix)
    result = ScenarioResult(
        scenario({"p95_ms": 1000, "max_error_rate": 0.5}), stats["Aggregated"], {}, []
    )
    evaluate(result)
    assert math.isnan(result.total.p95_ms) and result.total.error_rate == 1.0
    assert [c.passed for c in result.checks] == [False, False]


def test_fault_checks_recovery_and_failures_after_it() -> None:
    s = scenario(
        {"max_recovery_s": 10, "max_error_rate": 0.2},
        fault={"kind": "restart-postgres", "at": "20s"},
    )
    history = [
        HistoryPoint(t, 2, 2.0, 0.0, 100, 200, 300, requests, failures)
        for t, requests, failures in [
            (100, 0, 0),
            (110, 20, 0),
            (120, 40, 0),
            (125, 45, 5),
            (130, 55, 6),
            (140, 75, 6),
            (150, 95, 7),
        ]
    ]
    stats = read_stats_row(95, 7)
    fault = FaultOutcome("restart-postgres", injected_at=120.5, recovered_at=126.0)
    split_at_fault(fault, history, stats, grace_s=2.0)
    assert fault.during == (55 - 40, 6 - 0) and fault.after == (95 - 55, 7 - 6)
    result = ScenarioResult(s, stats, {}, history, fault=fault)
    checks = {c.metric: c for c in evaluate(result)}
    assert checks["recovery time"].passed and checks["recovery time"].measured == 5.5
    assert not checks["failed after recovery"].passed  # one failure after recovery
    assert checks["error rate"].passed  # 7 / 95 <= 20 %

    never = FaultOutcome("restart-postgres", injected_at=120.5)
    result = ScenarioResult(s, stats, {}, history, fault=never)
    assert [c.metric for c in evaluate(result) if not c.passed] == ["recovery time"]
    not_injected = FaultOutcome("restart-postgres", error="no database")
    result = ScenarioResult(s, stats, {}, history, fault=not_injected)
    assert "fault injected" in [c.metric for c in evaluate(result) if not c.passed]


def read_stats_row(requests: int, failures: int):  # noqa: ANN201
    from serve_app.loadtest.results import RequestStats

    return RequestStats("Aggregated", requests, failures, 100, 200, 300, 1.0)


def test_benchmarks_sections_are_replaced_in_place_and_carried_over() -> None:
    document = "# Benchmarks\n\nbefore\n"
    first = replace_section(document, "full", section("full", "run 1"))
    assert first.startswith("# Benchmarks\n\nbefore\n\n<!-- loadtest:full:begin -->")
    both = replace_section(first, "production", section("production", "prod run"))
    again = replace_section(both, "full", section("full", "run 2"))
    assert "run 1" not in again and "run 2" in again and "prod run" in again
    assert again.index("run 2") < again.index("prod run")  # stays where it was
    carried = load_test_sections(again)
    assert carried.count(":begin -->") == 2 and "before" not in carried
    # What `make bench` does: a regenerated report plus the carried sections.
    regenerated = "# Benchmarks\n\nnew tables\n" + "\n" + carried
    assert load_test_sections(regenerated) == carried
