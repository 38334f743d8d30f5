"""The control-schema tables of security (keys, audit log, rate buckets) behind one object
with its own small connection pool: the Ingress reaches them directly, not through the
Search deployment, so authenticating a request costs one local round trip, not a hop."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from serve_app.store import audit, keys, rate_limits
from serve_app.store.audit import AuditEntry
from serve_app.store.database import create_engine_for
from serve_app.store.keys import KeyRecord
from serve_app.store.versions import migrate

T = TypeVar("T")


class SecurityStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str, *, migrated: bool = False) -> SecurityStore:
        """Connect (a pool of 2 + 2: one replica's auth traffic is one short query each).

        No pre-ping (it would double the round trips of every request): a connection a
        restart broke is retried once on a fresh one instead (`_autocommit`)."""
        engine = create_engine_for(url, pool_size=2, max_overflow=2, pre_ping=False)
        if not migrated:
            migrate(engine)
        return cls(engine)

    def _autocommit(self, work: Callable[[Connection], T]) -> T:
        """One statement in autocommit (one round trip), retried once on a connection found
        dead (the pool is then refreshed)."""
        for attempt in (1, 2):
            try:
                with self.engine.connect() as conn:
                    return work(conn.execution_options(isolation_level="AUTOCOMMIT"))
            except DBAPIError as err:
                if attempt == 2 or not err.connection_invalidated:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.engine.dispose()

    # -- keys --
    def create_key(
        self, role: str, collections: Sequence[str] | None, expires_in_days: int | None
    ) -> tuple[KeyRecord, str]:
        with self.engine.begin() as conn:
            return keys.create_key(conn, role, collections, expires_in_days)

    def list_keys(self) -> list[KeyRecord]:
        with self.engine.begin() as conn:
            return keys.list_keys(conn)

    def revoke_key(self, key_id: str) -> KeyRecord:
        with self.engine.begin() as conn:
            return keys.revoke_key(conn, key_id)

    def find_by_digest(self, digest: bytes) -> KeyRecord | None:
        return self._autocommit(lambda conn: keys.find_by_digest(conn, digest))

    def find_by_id(self, key_id: str) -> KeyRecord | None:
        return self._autocommit(lambda conn: keys.find_by_id(conn, key_id))

    def count_usable_keys(self) -> int:
        with self.engine.connect() as conn:
            return keys.count_usable(conn)

    # -- rate limits --
    def take_token(self, bucket: str, rate: float, burst: float) -> int:
        return self._autocommit(lambda conn: rate_limits.take(conn, bucket, rate, burst))

    # -- audit --
    def append_audit(self, entries: Sequence[AuditEntry]) -> None:
        """Appended without waiting for the WAL flush (`synchronous_commit off` for this
        transaction only): a server crash may lose the last fraction of a second of entries,
        never corrupt them; key changes stay fully durable."""
        with self.engine.begin() as conn:
            conn.execute(text("SET LOCAL synchronous_commit TO OFF"))
            audit.append(conn, entries)

    def audit_page(self, **filters: Any) -> tuple[list[dict[str, Any]], str | None]:
        with self.engine.connect() as conn:
            return audit.read_page(conn, **filters)

    def prune_audit(self, retention_days: float) -> int:
        with self.engine.begin() as conn:
            return audit.prune(conn, retention_days)


__all__ = ["AuditEntry", "KeyRecord", "SecurityStore"]
