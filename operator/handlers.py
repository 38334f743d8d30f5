"""The FaceCollection operator: `kopf run operator/handlers.py --all-namespaces --standalone`.

A thin kopf adapter over `serve_app.kube`: each handler parses the resource, asks the
`Reconciler` to act on the store (the same `Store` the service uses), and reports the result
as `status.conditions` (type Ready), `status.observedGeneration` and the collection's facts.
Store outages retry with backoff (`kopf.TemporaryError`); a spec that can never work stops
(`kopf.PermanentError`). Credentials come from the environment (Secrets), never the spec:
FACESERVE_DATABASE_URL, and FACESERVE_PINECONE_API_KEY for Pinecone collections.

This folder has no __init__.py on purpose: a package named `operator` would shadow the
standard library's module of that name.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import kopf
from sqlalchemy.exc import SQLAlchemyError

from serve_app.config import Settings
from serve_app.errors import FaceserveError
from serve_app.kube.conditions import condition, set_condition
from serve_app.kube.reconcile import Outcome, Reconciler, ResourceRef
from serve_app.kube.spec import GROUP, PLURAL, VERSION, parse_spec

FINALIZER = "faceserve.io/storage"
# How often every FaceCollection is checked for drift (its schema or index removed behind the
# operator's back, the collection deleted through the API) and repaired.
DRIFT_INTERVAL_S = float(os.environ.get("FACESERVE_OPERATOR_DRIFT_INTERVAL_S", "60"))
# Store outages retry after RETRY_BASE_S, doubling each time, at most MAX_BACKOFF_S. kopf keeps
# these delays in wall-clock time on the resource (an annotation), so they survive a restart.
RETRY_BASE_S = float(os.environ.get("FACESERVE_OPERATOR_RETRY_BASE_S", "5"))
MAX_BACKOFF_S = 300.0


@kopf.on.startup()
def start(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: logging.Logger, **_: Any):
    """Open the store (and migrate it) once; handlers share it through `memo`."""
    settings.persistence.finalizer = FINALIZER
    settings.posting.level = logging.INFO
    config = Settings.from_env()
    if not config.database_url:
        raise kopf.PermanentError(
            "FACESERVE_DATABASE_URL is not set: the operator needs the PostgreSQL the service "
            "uses (from the faceserve-postgres Secret)"
        )
    from serve_app.store.store import Store
    from serve_app.store.vectors import vector_indexes_for

    try:
        memo.store = Store.open(config.database_url, vector_indexes=vector_indexes_for(config))
    except SQLAlchemyError as err:
        raise kopf.TemporaryError(f"PostgreSQL is not reachable: {_short(err)}", delay=10) from err
    memo.reconciler = Reconciler(memo.store)
    logger.info("faceserve operator ready (drift check every %.0f s)", DRIFT_INTERVAL_S)


@kopf.on.cleanup()
def stop(memo: kopf.Memo, **_: Any) -> None:
    store = getattr(memo, "store", None)
    if store is not None:
        store.close()


@kopf.on.probe(id="database")
def database_answers(memo: kopf.Memo, **_: Any) -> bool:
    """On the liveness endpoint (`kopf run --liveness=...`). kopf answers 200 whatever a probe
    returns and 500 only when one raises: so a database that stopped answering raises."""
    store = getattr(memo, "store", None)
    if store is None or not store.ping():
        raise RuntimeError("PostgreSQL does not answer")
    return True


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
def reconcile(
    body: kopf.Body,
    spec: kopf.Spec,
    meta: kopf.Meta,
    status: kopf.Status,
    patch: kopf.Patch,
    memo: kopf.Memo,
    retry: int,
    **_: Any,
) -> None:
    """Create the collection (schema, vector index) or check and repair it; report Ready."""
    outcome = _reconcile(memo, spec, meta, retry)
    _report(patch, status, meta, outcome)
    _announce(body, outcome)
    if outcome.reason in _PERMANENT:
        raise kopf.PermanentError(outcome.message)


@kopf.timer(GROUP, VERSION, PLURAL, interval=DRIFT_INTERVAL_S, initial_delay=DRIFT_INTERVAL_S)
def check_drift(
    body: kopf.Body,
    spec: kopf.Spec,
    meta: kopf.Meta,
    status: kopf.Status,
    patch: kopf.Patch,
    memo: kopf.Memo,
    retry: int,
    **_: Any,
) -> None:
    """Repair what was removed behind the operator's back; keep the status (faces) current."""
    outcome = _reconcile(memo, spec, meta, retry)
    before = condition(status.get("conditions"), "Ready") or {}
    _report(patch, status, meta, outcome, only_changes=True)
    if outcome.created or outcome.repaired or before.get("reason") != outcome.reason:
        _announce(body, outcome)  # events for news only, not on every tick


@kopf.on.delete(GROUP, VERSION, PLURAL)
def delete(spec: kopf.Spec, meta: kopf.Meta, memo: kopf.Memo, retry: int, logger, **_: Any):
    """Honour deletionPolicy (Retain keeps the collection and its faces), then let go of the
    finalizer. A spec too broken to read retains: deleting data is never a default."""
    policy = spec.get("deletionPolicy", "Retain")
    ref = ResourceRef(meta["namespace"], meta["name"], meta["uid"])
    try:
        done = memo.reconciler.delete(ref, policy if policy in ("Retain", "Delete") else "Retain")
    except _TRANSIENT as err:
        raise kopf.TemporaryError(f"storage unavailable: {_short(err)}", _backoff(retry)) from err
    logger.info(done)


# -- internals ------------------------------------------------------------------------------

# Outcomes that no retry can fix: the spec (or a name clash) must change first.
_PERMANENT = {"InvalidSpec", "NameConflict"}
_TRANSIENT = (SQLAlchemyError, OSError, ConnectionError, TimeoutError)


def _reconcile(memo: kopf.Memo, spec: kopf.Spec, meta: kopf.Meta, retry: int) -> Outcome:
    ref = ResourceRef(meta["namespace"], meta["name"], meta["uid"])
    try:
        parsed = parse_spec(dict(spec))
        return memo.reconciler.reconcile(ref, parsed)
    except _TRANSIENT as err:
        raise kopf.TemporaryError(f"storage unavailable: {_short(err)}", _backoff(retry)) from err
    except FaceserveError as err:
        if err.http_status >= 500:  # e.g. Pinecone unreachable: worth another try
            raise kopf.TemporaryError(err.message, _backoff(retry)) from err
        return Outcome(False, "InvalidSpec", err.message)


def _report(
    patch: kopf.Patch,
    status: kopf.Status,
    meta: kopf.Meta,
    outcome: Outcome,
    *,
    only_changes: bool = False,
) -> None:
    generation = meta.get("generation")
    reason, message = outcome.reason, outcome.message
    before = condition(status.get("conditions"), "Ready") or {}
    if outcome.reason == "Reconciled" and before.get("status") == "True":
        # Nothing happened: keep saying why it became Ready (e.g. Created) rather than churn.
        reason, message = before.get("reason", reason), before.get("message", message)
    fields: dict[str, Any] = {
        "conditions": set_condition(
            status.get("conditions"), "Ready", outcome.ready, reason, message, generation
        ),
        "observedGeneration": generation,
        **outcome.status_fields(),
    }
    for key, value in fields.items():
        if not only_changes or status.get(key) != value:
            patch.status[key] = value


def _announce(body: kopf.Body, outcome: Outcome) -> None:
    """Kubernetes events for what a user of `kubectl describe` wants to know."""
    if outcome.created or outcome.repaired:
        kopf.info(body, reason=outcome.reason, message=outcome.message)
    elif not outcome.ready:
        kopf.warn(body, reason=outcome.reason, message=outcome.message)


def _backoff(retry: int) -> float:
    return min(MAX_BACKOFF_S, RETRY_BASE_S * 2 ** min(retry, 10))


def _short(err: BaseException) -> str:
    return str(err).splitlines()[0][:300] if str(err) else type(err).__name__
