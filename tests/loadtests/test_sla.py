"""The SLA file: the committed one is valid, and a bad one is refused naming the bad key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from serve_app import cli
from serve_app.loadtest.sla import SlaFileError, load_sla, parse_duration, parse_sla

REPO = Path(__file__).resolve().parents[2]
SLA = REPO / "loadtests" / "sla.yaml"


def minimal(**scenario: Any) -> dict[str, Any]:
    body = {
        "users": 2,
        "spawn_rate": 1,
        "duration": "10s",
        "thresholds": {"p95_ms": 1000, "max_error_rate": 0},
    }
    body.update(scenario)
    return {"profiles": {"p": {"scenarios": {"search": body}}}}


def test_the_committed_sla_file_has_its_profiles() -> None:
    sla = load_sla(SLA)
    assert {"short", "short-faults", "full", "production"} <= set(sla.profiles)
    assert sla.profile(None).name == "full"
    short = sla.profile("short")
    assert [s.kind for s in short.scenarios] == ["detect", "index", "search", "compare", "mixed"]
    assert short.load_seconds < 45  # runs inside `make test`
    assert all(s.thresholds.max_error_rate == 0 for s in short.scenarios)
    faults = {s.fault.kind for s in sla.profile("full").scenarios if s.fault}
    assert faults == {"kill-embedder-replica", "restart-postgres"}
    for profile in sla.profiles.values():
        for s in profile.scenarios:
            if s.fault is not None:  # every fault has an error budget and a recovery limit
                assert s.thresholds.max_error_rate is not None
                assert s.thresholds.max_recovery_s is not None


@pytest.mark.parametrize(
    ("document", "key", "message"),
    [
        (
            minimal(thresholds={"p95": 1000}),
            "profiles.p.scenarios.search.thresholds.p95",
            "unknown key",
        ),
        (minimal(duration="ten seconds"), "profiles.p.scenarios.search.duration", "duration"),
        (
            minimal(thresholds={"max_error_rate": 5}),
            "profiles.p.scenarios.search.thresholds.max_error_rate",
            "between 0 and 1",
        ),
        (minimal(kind="upload"), "profiles.p.scenarios.search.kind", "not a scenario kind"),
        (minimal(users=0), "profiles.p.scenarios.search.users", "whole number"),
        (minimal(wait=[2, 1]), "profiles.p.scenarios.search.wait", "min must not exceed max"),
        (
            minimal(thresholds={"p50_ms": 900, "p95_ms": 500}),
            "profiles.p.scenarios.search.thresholds",
            "p50_ms <= p95_ms <= p99_ms",
        ),
        (
            minimal(thresholds={"max_recovery_s": 10}),
            "profiles.p.scenarios.search.thresholds.max_recovery_s",
            "only a scenario with a `fault`",
        ),
        (
            minimal(fault={"kind": "unplug-the-server", "at": "5s"}),
            "profiles.p.scenarios.search.fault.kind",
            "is not one of",
        ),
        (
            minimal(fault={"kind": "restart-postgres", "at": "20s"}),
            "profiles.p.scenarios.search.fault.at",
            "before the end",
        ),
        ({"profiles": {"p": {"scenarios": {}}}}, "profiles.p.scenarios", "at least one"),
        (
            minimal() | {"default_profile": "nightly"},
            "default_profile",
            "not one of the profiles",
        ),
        (
            {"profiles": {"p": {"scenarios": {"search": {"users": 1}}}}},
            "profiles.p.scenarios.search.duration",
            "required key is missing",
        ),
    ],
)
def test_a_bad_sla_file_names_the_bad_key(document: dict, key: str, message: str) -> None:
    with pytest.raises(SlaFileError) as caught:
        parse_sla(document, Path("sla.yaml"))
    assert f"sla.yaml: {key}: " in caught.value.message
    assert message in caught.value.message


def test_durations() -> None:
    assert [parse_duration(v) for v in (90, "90s", "2m", "1m30s", "1h")] == [90, 90, 120, 90, 3600]
    for bad in ("", "0s", "-5", "5 minutes", True):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_the_cli_refuses_a_bad_sla_file_with_exit_2(tmp_path: Path, capsys) -> None:
    path = tmp_path / "sla.yaml"
    path.write_text(yaml.safe_dump(minimal(thresholds={"p99": 5})))
    code = cli.main(["loadtest", "--sla", str(path), "--output", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err
    assert "profiles.p.scenarios.search.thresholds.p99: unknown key" in err
    assert cli.main(["loadtest", "--sla", str(SLA), "--profile", "nightly"]) == 2
    assert "no profile 'nightly'" in capsys.readouterr().err
    assert cli.main(["loadtest", "--sla", str(SLA), "--profile", "short", "--scenario", "x"]) == 2
    assert "no scenario x" in capsys.readouterr().err


def test_without_locust_the_cli_says_what_to_install(monkeypatch, capsys) -> None:
    from serve_app.loadtest import runner

    monkeypatch.setattr(runner, "missing_tools", lambda: ["locust", "matplotlib"])
    assert cli.main(["loadtest", "--sla", str(SLA), "--profile", "short"]) == 3
    assert "pip install 'faceserve[loadtest]'" in capsys.readouterr().err
