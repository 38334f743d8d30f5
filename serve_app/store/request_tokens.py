"""Client request tokens: a retried write returns its first reply instead of running twice.

A token is claimed inside the transaction of the write it guards, and its reply is stored in
that same transaction: a write that fails leaves no token behind, and a racing retry waits on
the claim, then reads the reply. Tokens live in their collection's schema for 24 hours.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, func, select
from sqlalchemy.dialects.postgresql import insert

from serve_app.errors import IdempotentParameterMismatch
from serve_app.store.collection_schema import CollectionTables

LIFETIME = timedelta(hours=24)
_SWEEP = 100


def fingerprint(operation: str, parameters: Any) -> str:
    """A digest of what a request asked for (JSON-able parameters, canonical order)."""
    text = json.dumps([operation, parameters], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def claim(
    conn: Connection,
    tables: CollectionTables,
    token: str | None,
    operation: str,
    parameters: Any,
) -> dict[str, Any] | None:
    """The stored reply when `token` already did this request within 24 h; None when the
    caller is to do the work (and then `remember` its reply). The same token with other
    parameters is `IdempotentParameterMismatch`."""
    if token is None:
        return None
    t = tables.request_tokens
    digest = fingerprint(operation, parameters)
    expired = func.now() - LIFETIME
    # Sweep a few expired tokens; rows another request is sweeping are left to it.
    stale = select(t.c.token).where(t.c.created_at < expired).limit(_SWEEP)
    stale = stale.with_for_update(skip_locked=True)
    conn.execute(t.delete().where(t.c.token.in_(stale.scalar_subquery())))
    values = {
        "token": token,
        "operation": operation,
        "fingerprint": digest,
        "response": None,
        "created_at": func.now(),
    }
    # A new token, or one past its lifetime, is ours; a live one is an earlier request's.
    claimed = conn.execute(
        insert(t)
        .values(values)
        .on_conflict_do_update(
            index_elements=[t.c.token], set_=values, where=t.c.created_at < expired
        )
        .returning(t.c.token)
    ).first()
    if claimed is not None:
        return None
    row = conn.execute(select(t).where(t.c.token == token)).one()
    if row.operation != operation or row.fingerprint != digest:
        raise IdempotentParameterMismatch(
            f"request token {token!r} was used with other parameters (idempotent parameter "
            "mismatch): use a new token for a different request"
        )
    return dict(row.response)


def remember(
    conn: Connection, tables: CollectionTables, token: str | None, response: dict[str, Any]
) -> None:
    """Store the reply of the request that claimed `token` (no-op without a token)."""
    if token is None:
        return
    t = tables.request_tokens
    conn.execute(t.update().where(t.c.token == token).values(response=response))
