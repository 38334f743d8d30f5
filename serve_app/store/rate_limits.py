"""Token buckets in PostgreSQL, so every Ingress replica spends from the same bucket.

One statement per request: a bucket's tokens are refilled by the time since its last update
(`rate` a second, at most `burst`) and, when a whole token is there, one is taken. When none
is, the conditional upsert changes nothing (the refill keeps counting from the last take) and
returns no row. The upsert locks the row, so two replicas cannot both take the last token.
"""

from __future__ import annotations

import math

from sqlalchemy import Connection, text

from serve_app.store.control import CONTROL_SCHEMA

_REFILL = (
    "LEAST(CAST(:burst AS float8), b.tokens + "
    "EXTRACT(EPOCH FROM (clock_timestamp() - b.updated_at)) * CAST(:rate AS float8))"
)
_TAKE = text(
    f"INSERT INTO {CONTROL_SCHEMA}.rate_buckets AS b (bucket, tokens, updated_at) "
    "VALUES (:bucket, CAST(:burst AS float8) - 1, clock_timestamp()) "
    f"ON CONFLICT (bucket) DO UPDATE SET tokens = {_REFILL} - 1, updated_at = clock_timestamp() "
    f"WHERE {_REFILL} >= 1 RETURNING 1"
)


def take(conn: Connection, bucket: str, rate: float, burst: float) -> int:
    """Take one token from `bucket`: 0 when taken, else whole seconds to wait (at most the
    time one token takes to refill)."""
    taken = conn.execute(
        _TAKE, {"bucket": bucket[:200], "rate": float(rate), "burst": float(burst)}
    ).first()
    return 0 if taken is not None else max(1, math.ceil(1.0 / rate))
