"""The SLA file (`loadtests/sla.yaml`): profiles of scenarios, each with its load and thresholds.

Validated on load: any unknown key, missing key or bad value is an `SlaFileError` whose
message names the key by its path, e.g. `profiles.short.scenarios.search.thresholds.p95`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from serve_app.errors import InvalidParameter

# The locust user class behind each scenario kind (see loadtests/locustfile.py).
USER_CLASSES = {
    "detect": "DetectUser",
    "index": "IndexUser",
    "search": "SearchUser",
    "compare": "CompareUser",
    "mixed": "MixedUser",
}
FAULT_KINDS = ("kill-embedder-replica", "restart-postgres")

_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$")


class SlaFileError(InvalidParameter):
    """The SLA file cannot be used; the message names the offending key."""


@dataclass(frozen=True)
class Thresholds:
    """Limits one scenario (or one request name in it) must meet; None: not checked."""

    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    min_rps: float | None = None
    max_error_rate: float | None = None
    # Fault scenarios: seconds from the fault until the service is whole again.
    max_recovery_s: float | None = None


@dataclass(frozen=True)
class Fault:
    """A fault injected mid-run: `kind` at `at_s` seconds after the load starts."""

    kind: str
    at_s: float
    recovery_timeout_s: float = 120.0


@dataclass(frozen=True)
class PayloadSpec:
    """The upload photos: how many, at which sizes (long side, px), and their byte range."""

    faces: int = 16
    groups: int = 4
    sizes: tuple[int, ...] = (640, 1024, 1600, 2048, 3000)
    min_bytes: int = 300_000
    max_bytes: int = 3_000_000


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str  # a key of USER_CLASSES
    users: int
    spawn_rate: float
    duration_s: float
    wait_s: tuple[float, float]
    thresholds: Thresholds
    requests: dict[str, Thresholds] = field(default_factory=dict)
    fault: Fault | None = None

    @property
    def user_class(self) -> str:
        """The locust user class that runs this scenario."""
        return USER_CLASSES[self.kind]


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    payloads: PayloadSpec
    scenarios: tuple[Scenario, ...]

    @property
    def load_seconds(self) -> float:
        """Seconds of load in all, start-up and seeding not counted."""
        return sum(s.duration_s for s in self.scenarios)


@dataclass(frozen=True)
class SlaFile:
    path: Path
    default_profile: str
    profiles: dict[str, Profile]

    def profile(self, name: str | None) -> Profile:
        """The named profile, or the file's default one."""
        chosen = name or self.default_profile
        if chosen not in self.profiles:
            raise SlaFileError(
                f"{self.path}: no profile {chosen!r} (profiles: {', '.join(self.profiles)})"
            )
        return self.profiles[chosen]


def load_sla(path: Path) -> SlaFile:
    """Read and validate an SLA file."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise SlaFileError(f"cannot read SLA file {path}: {exc.strerror}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SlaFileError(f"{path} is not valid YAML: {exc}") from None
    return parse_sla(document, Path(path))


def parse_sla(document: Any, path: Path = Path("sla.yaml")) -> SlaFile:
    """Validate an SLA document (the parsed YAML)."""
    where = _Where(path)
    root = where.mapping(document, "", required={"profiles"}, optional={"default_profile"})
    raw_profiles = where.mapping(root["profiles"], "profiles")
    if not raw_profiles:
        raise where.error("profiles", "at least one profile is required")
    profiles = {
        str(name): _profile(where, str(name), raw, f"profiles.{name}")
        for name, raw in raw_profiles.items()
    }
    default = root.get("default_profile", next(iter(profiles)))
    if default not in profiles:
        raise where.error("default_profile", f"{default!r} is not one of the profiles")
    return SlaFile(path, str(default), profiles)


def parse_duration(value: Any) -> float:
    """Seconds from `90`, `90s`, `2m`, `1m30s` or `1h`."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value).strip())
        if not match or not any(match.groups()):
            raise ValueError(value)
        h, m, s = (float(g) if g else 0.0 for g in match.groups())
        seconds = 3600 * h + 60 * m + s
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(value)
    return seconds


def format_duration(seconds: float) -> str:
    """`75` -> `1m15s`, the form locust's `-t` accepts."""
    whole = max(1, round(seconds))
    minutes, secs = divmod(whole, 60)
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


# -- validation --------------------------------------------------------------------------

_THRESHOLD_KEYS = {"p50_ms", "p95_ms", "p99_ms", "min_rps", "max_error_rate", "max_recovery_s"}


class _Where:
    def __init__(self, path: Path) -> None:
        self.path = path

    def error(self, key: str, message: str) -> SlaFileError:
        return SlaFileError(f"{self.path}: {key or 'the document'}: {message}")

    def mapping(
        self,
        value: Any,
        key: str,
        *,
        required: set[str] | None = None,
        optional: set[str] | None = None,
    ) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.error(key, f"expected a mapping, got {type(value).__name__}")
        if required is None and optional is None:
            return value
        allowed = (required or set()) | (optional or set())
        for name in value:
            if name not in allowed:
                raise self.error(
                    _join(key, str(name)),
                    f"unknown key (expected one of: {', '.join(sorted(allowed))})",
                )
        for name in sorted(required or set()):
            if name not in value:
                raise self.error(_join(key, name), "required key is missing")
        return value

    def number(
        self, value: Any, key: str, *, minimum: float = 0.0, maximum: float | None = None
    ) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"expected a number, got {value!r}")
        if not math.isfinite(value) or value < minimum or (maximum is not None and value > maximum):
            bound = (
                f"between {minimum:g} and {maximum:g}" if maximum is not None else f">= {minimum:g}"
            )
            raise self.error(key, f"{value!r} must be {bound}")
        return float(value)

    def positive_int(self, value: Any, key: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise self.error(key, f"expected a whole number >= 1, got {value!r}")
        return value

    def duration(self, value: Any, key: str) -> float:
        try:
            return parse_duration(value)
        except ValueError:
            raise self.error(
                key, f"{value!r} is not a duration (seconds, or like 30s, 2m, 1m30s)"
            ) from None


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _profile(where: _Where, name: str, raw: Any, key: str) -> Profile:
    body = where.mapping(raw, key, required={"scenarios"}, optional={"description", "payloads"})
    payloads = _payloads(where, body.get("payloads", {}), _join(key, "payloads"))
    raw_scenarios = where.mapping(body["scenarios"], _join(key, "scenarios"))
    if not raw_scenarios:
        raise where.error(_join(key, "scenarios"), "at least one scenario is required")
    scenarios = tuple(
        _scenario(where, str(s_name), s_raw, f"{key}.scenarios.{s_name}")
        for s_name, s_raw in raw_scenarios.items()
    )
    return Profile(name, str(body.get("description", "")).strip(), payloads, scenarios)


def _payloads(where: _Where, raw: Any, key: str) -> PayloadSpec:
    body = where.mapping(raw, key, optional={"faces", "groups", "sizes", "min_bytes", "max_bytes"})
    default = PayloadSpec()
    sizes = body.get("sizes", list(default.sizes))
    if not isinstance(sizes, list) or not sizes:
        raise where.error(_join(key, "sizes"), "expected a list of long sides in pixels")
    checked_sizes = tuple(
        int(where.number(s, f"{key}.sizes[{i}]", minimum=64, maximum=8000))
        for i, s in enumerate(sizes)
    )
    spec = PayloadSpec(
        faces=where.positive_int(body.get("faces", default.faces), _join(key, "faces")),
        groups=int(where.number(body.get("groups", default.groups), _join(key, "groups"))),
        sizes=checked_sizes,
        min_bytes=int(
            where.number(body.get("min_bytes", default.min_bytes), _join(key, "min_bytes"))
        ),
        max_bytes=int(
            where.number(body.get("max_bytes", default.max_bytes), _join(key, "max_bytes"))
        ),
    )
    if spec.min_bytes > spec.max_bytes:
        raise where.error(_join(key, "min_bytes"), "must not exceed max_bytes")
    return spec


def _scenario(where: _Where, name: str, raw: Any, key: str) -> Scenario:
    body = where.mapping(
        raw,
        key,
        required={"users", "spawn_rate", "duration", "thresholds"},
        optional={"kind", "wait", "requests", "fault"},
    )
    kind = body.get("kind", name)
    if kind not in USER_CLASSES:
        what = _join(key, "kind") if "kind" in body else key
        raise where.error(
            what,
            f"{kind!r} is not a scenario kind (one of: {', '.join(USER_CLASSES)}); "
            "name the scenario after one or set `kind`",
        )
    wait = body.get("wait", [0.0, 0.0])
    if not isinstance(wait, list) or len(wait) != 2:
        raise where.error(_join(key, "wait"), "expected [min_seconds, max_seconds]")
    wait_s = (
        where.number(wait[0], f"{key}.wait[0]", maximum=3600),
        where.number(wait[1], f"{key}.wait[1]", maximum=3600),
    )
    if wait_s[0] > wait_s[1]:
        raise where.error(_join(key, "wait"), "min must not exceed max")
    requests = where.mapping(body.get("requests", {}), _join(key, "requests"))
    fault = None
    if "fault" in body:
        fault = _fault(where, body["fault"], _join(key, "fault"))
    thresholds = _thresholds(where, body["thresholds"], _join(key, "thresholds"), fault)
    duration_s = where.duration(body["duration"], _join(key, "duration"))
    if fault is not None and fault.at_s >= duration_s:
        raise where.error(_join(key, "fault.at"), "must come before the end of the duration")
    return Scenario(
        name=name,
        kind=kind,
        users=where.positive_int(body["users"], _join(key, "users")),
        spawn_rate=where.number(body["spawn_rate"], _join(key, "spawn_rate"), minimum=0.01),
        duration_s=duration_s,
        wait_s=wait_s,
        thresholds=thresholds,
        requests={
            str(r): _thresholds(where, t, f"{key}.requests.{r}", None) for r, t in requests.items()
        },
        fault=fault,
    )


def _fault(where: _Where, raw: Any, key: str) -> Fault:
    body = where.mapping(raw, key, required={"kind", "at"}, optional={"recovery_timeout"})
    if body["kind"] not in FAULT_KINDS:
        raise where.error(
            _join(key, "kind"), f"{body['kind']!r} is not one of: {', '.join(FAULT_KINDS)}"
        )
    return Fault(
        kind=body["kind"],
        at_s=where.duration(body["at"], _join(key, "at")),
        recovery_timeout_s=where.duration(
            body.get("recovery_timeout", 120), _join(key, "recovery_timeout")
        ),
    )


def _thresholds(where: _Where, raw: Any, key: str, fault: Fault | None) -> Thresholds:
    body = where.mapping(raw, key, optional=_THRESHOLD_KEYS)
    if not body:
        raise where.error(key, "at least one threshold is required")
    if "max_recovery_s" in body and fault is None:
        raise where.error(
            _join(key, "max_recovery_s"), "only a scenario with a `fault` can have it"
        )
    values: dict[str, float] = {}
    for name, value in body.items():
        maximum = 1.0 if name == "max_error_rate" else None
        values[name] = where.number(value, _join(key, name), maximum=maximum)
    order = [values[p] for p in ("p50_ms", "p95_ms", "p99_ms") if p in values]
    if order != sorted(order):
        raise where.error(key, "latency limits must satisfy p50_ms <= p95_ms <= p99_ms")
    return Thresholds(**values)
