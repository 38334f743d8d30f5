"""Kubernetes-style status conditions (`type`, `status`, `reason`, `message`, times)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(
    conditions: list[dict[str, Any]] | None,
    type_: str,
    ok: bool | None,
    reason: str,
    message: str,
    generation: int | None,
) -> list[dict[str, Any]]:
    """`conditions` with the one of `type_` replaced; its lastTransitionTime moves only when
    its status changes (the Kubernetes API conventions)."""
    status = "Unknown" if ok is None else ("True" if ok else "False")
    previous = next((c for c in conditions or [] if c.get("type") == type_), None)
    since = previous.get("lastTransitionTime") if previous else None
    if previous is None or previous.get("status") != status or not since:
        since = now()
    condition = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since,
    }
    if generation is not None:
        condition["observedGeneration"] = generation
    others = [c for c in conditions or [] if c.get("type") != type_]
    return [*others, condition]


def condition(conditions: list[dict[str, Any]] | None, type_: str) -> dict[str, Any] | None:
    return next((c for c in conditions or [] if c.get("type") == type_), None)
