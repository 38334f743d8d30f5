"""`faceserve loadtest` end to end: it starts the service, seeds it, runs locust, writes its
reports, and its exit status says whether the SLA held (a real Ray Serve, a real PostgreSQL,
real photos, as an operator would run it)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
SLA = REPO / "loadtests" / "sla.yaml"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def loadtest(model_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would, in its own process (it becomes a Ray driver)."""
    env = os.environ | {"FACESERVE_MODEL_DIR": str(model_dir)}
    env.pop("FACESERVE_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "serve_app.cli", "loadtest", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )


def table_rows(stdout: str) -> list[list[str]]:
    """The pass/fail table's rows, split on runs of two spaces."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("scenario "))
    rows = []
    for line in lines[start + 2 :]:
        if not line.strip():
            break
        rows.append([cell.strip() for cell in line.split("  ") if cell.strip()])
    return rows


def test_short_profile_meets_its_sla_and_writes_the_reports(
    model_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "short"
    run = loadtest(model_dir, "--sla", str(SLA), "--profile", "short", "--output", str(out))
    assert run.returncode == 0, run.stdout + run.stderr[-5000:]

    rows = table_rows(run.stdout)
    assert rows and all(row[-1] == "PASS" for row in rows)
    scenarios = ["detect", "index", "search", "compare", "mixed"]
    assert {row[0] for row in rows} == set(scenarios)
    assert "SLA met" in run.stdout
    for name in scenarios:
        with open(out / f"{name}_stats.csv", newline="") as f:
            stats = {row["Name"]: row for row in csv.DictReader(f)}
        total = stats["Aggregated"]
        assert int(total["Request Count"]) >= 3 and int(total["Failure Count"]) == 0, name
        assert float(total["50%"]) > 0
        history = (out / f"{name}_stats_history.csv").read_text().splitlines()
        assert len(history) > 3, name
        html = (out / f"{name}.html").read_text()
        assert "locust" in html.lower() and len(html) > 10_000
        with Image.open(out / f"{name}.png") as chart:
            assert chart.format == "PNG" and chart.size[0] >= 600
    with Image.open(out / "short.png") as chart:  # every scenario, one row each
        assert chart.size[1] > chart.size[0] * 0.6
    # The mix did what it says on the tin.
    with open(out / "mixed_stats.csv", newline="") as f:
        mixed = {row["Name"]: int(row["Request Count"]) for row in csv.DictReader(f)}
    assert mixed["search"] > mixed.get("index", 0)
    results = json.loads((out / "results.json").read_text())
    assert results["passed"] is True
    indexing = {s["name"]: s for s in results["scenarios"]}["index"]
    assert indexing["acknowledged_faces"] > 10 and indexing["lost_faces"] == []
    assert "PASS" in (out / "report.md").read_text()


def test_an_impossible_sla_fails_with_exit_1_and_writes_benchmarks(
    model_dir: Path, tmp_path: Path
) -> None:
    sla = tmp_path / "sla.yaml"
    sla.write_text(
        yaml.safe_dump(
            {
                "profiles": {
                    "impossible": {
                        "payloads": {"faces": 3, "groups": 1},
                        "scenarios": {
                            "search": {
                                "users": 2,
                                "spawn_rate": 2,
                                "duration": "4s",
                                "thresholds": {"p50_ms": 1, "max_error_rate": 0},
                            }
                        },
                    }
                }
            }
        )
    )
    benchmarks = tmp_path / "BENCHMARKS.md"
    benchmarks.write_text("# Benchmarks\n\nthe pipeline tables\n")
    run = loadtest(
        model_dir,
        "--sla",
        str(sla),
        "--locustfile",
        str(REPO / "loadtests" / "locustfile.py"),
        "--output",
        str(tmp_path / "out"),
        "--benchmarks",
        str(benchmarks),
    )
    assert run.returncode == 1, run.stdout + run.stderr[-5000:]
    rows = {(row[0], row[2]): row for row in table_rows(run.stdout)}
    p50 = rows[("search", "p50 latency")]
    assert p50[-1] == "FAIL" and p50[-2] == "<= 1 ms"
    assert rows[("search", "error rate")][-1] == "PASS"  # it is slow, not broken
    assert "SLA missed: 1 of 2 thresholds failed" in run.stdout
    assert json.loads((tmp_path / "out" / "results.json").read_text())["passed"] is False

    document = benchmarks.read_text()
    assert document.startswith("# Benchmarks\n\nthe pipeline tables\n")
    assert "<!-- loadtest:impossible:begin -->" in document
    assert "| search | all requests | p50 latency |" in document and "**FAIL**" in document
    assert "![latency percentiles and throughput over time](docs/loadtest/impossible.png)" in (
        document
    )
    with Image.open(tmp_path / "docs" / "loadtest" / "impossible.png") as chart:
        assert chart.format == "PNG"


def test_faults_under_load_recover_by_themselves_and_lose_nothing(
    model_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "faults"
    run = loadtest(model_dir, "--sla", str(SLA), "--profile", "short-faults", "--output", str(out))
    assert run.returncode == 0, run.stdout + run.stderr[-5000:]
    scenarios = {s["name"]: s for s in json.loads((out / "results.json").read_text())["scenarios"]}

    embedder = scenarios["kill-embedder"]
    assert embedder["fault"]["error"] is None
    assert "Serve replaced it with" in embedder["fault"]["detail"]
    postgres = scenarios["restart-postgres"]
    assert "the supervisor restarted it" in postgres["fault"]["detail"]
    for s in (embedder, postgres):
        assert s["fault"]["recovery_s"] is not None
        assert s["acknowledged_faces"] > 0 and s["lost_faces"] == []
        assert s["requests"] > 10
        assert {c["metric"] for c in s["checks"]} >= {
            "recovery time",
            "failed after recovery",
            "acknowledged faces lost",
            "error rate",
        }
        assert all(c["passed"] for c in s["checks"])


def test_an_unreachable_host_could_not_run_exit_3(model_dir: Path, tmp_path: Path) -> None:
    run = loadtest(
        model_dir,
        "--sla",
        str(SLA),
        "--profile",
        "short",
        "--scenario",
        "search",
        "--host",
        "http://127.0.0.1:9",
        "--ready-timeout",
        "2",
        "--output",
        str(tmp_path / "out"),
    )
    assert run.returncode == 3, run.stdout + run.stderr
    assert "could not run" in run.stderr and "not ready" in run.stderr
