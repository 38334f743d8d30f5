"""Who may do what: API keys and their roles, collection scopes, rate limits, the audit log.

One `AccessControl` per Ingress replica. It authenticates a bearer secret or a SigV4 key id
against one key store (keys in the database, plus the configured FACESERVE_ADMIN_KEY and
FACESERVE_AWS_KEYS), caches what it found for `CACHE_TTL_S` (so a revocation holds within a
second on every replica), takes a token from the caller's bucket in PostgreSQL, and appends
audit entries. The edges (REST, Rekognition) declare the role each operation needs and ask.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

from serve_app.errors import Forbidden, InvalidParameter, NotFound, RateLimited, Unauthenticated
from serve_app.store.audit import AuditEntry
from serve_app.store.database import outages_as_unavailable
from serve_app.store.keys import ROLES, KeyRecord, secret_digest
from serve_app.store.security import SecurityStore

log = logging.getLogger(__name__)
T = TypeVar("T")

RANK = {role: n for n, role in enumerate(ROLES)}  # read < write < admin
CACHE_TTL_S = 0.5
_CACHE_MAX = 10_000
ADMIN_KEY_ID = "admin"
ANONYMOUS = "anonymous"
PRUNE_EVERY_S = 3600.0
AUDIT_FLUSH_S = 0.05


@dataclass(frozen=True)
class Principal:
    """The caller: its key id (None with auth disabled), role, and collection scope."""

    key_id: str | None
    role: str
    collections: frozenset[str] | None = None

    def may(self, role: str) -> bool:
        return RANK[self.role] >= RANK[role]

    def sees(self, collection: str) -> bool:
        return self.collections is None or collection in self.collections


OPEN = Principal(None, "admin")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def configured_keys(admin_key: str, aws_keys: Mapping[str, str]) -> list[KeyRecord]:
    """The keys given in the environment: admin keys, held in memory only."""
    pairs = dict(aws_keys)
    if admin_key:
        pairs[ADMIN_KEY_ID] = admin_key
    return [
        KeyRecord(key_id, "admin", None, None, None, None, signing_key=b"AWS4" + secret.encode())
        for key_id, secret in pairs.items()
    ]


class AccessControl:
    def __init__(
        self,
        store: SecurityStore | None,
        *,
        enabled: bool = True,
        configured: Sequence[KeyRecord] = (),
        rate_limits: Mapping[str, float] | None = None,
        burst_s: float = 2.0,
        retention_days: float = 365.0,
        metrics_public: bool = True,
    ) -> None:
        self.store = store
        self.enabled = enabled
        self.metrics_public = metrics_public
        self._configured_by_id = {k.key_id: k for k in configured}
        self._configured_by_digest = {secret_digest(_secret(k)): k for k in configured}
        self.rate_limits = dict(rate_limits or {})
        self.burst_s = burst_s
        self.retention_days = retention_days
        self._cache: dict[tuple[str, bytes | str], tuple[float, KeyRecord | None]] = {}
        self._next_prune = 0.0
        self._pending: list[AuditEntry] = []
        self._flusher: asyncio.Task[None] | None = None
        self._flush_lock: asyncio.Lock | None = None

    @classmethod
    def from_settings(cls, settings: Any, store: SecurityStore) -> AccessControl:
        """From FACESERVE_* settings. Secure by default: listening beyond loopback with auth
        on and no key anywhere is refused (InvalidParameter) rather than served open."""
        enabled = settings.auth != "disabled"
        configured = configured_keys(settings.admin_key, settings.rekognition.keys)
        if not enabled:
            log.warning(
                "authentication is DISABLED (FACESERVE_AUTH=disabled): anyone who can reach "
                "port %s may read and delete every face",
                settings.port,
            )
        elif (
            not configured
            and not is_loopback(settings.host)
            and outages_as_unavailable(store.count_usable_keys) == 0
        ):
            raise InvalidParameter(
                f"refusing to serve on {settings.host} without an API key: set "
                "FACESERVE_ADMIN_KEY, create one with `faceserve keys create --role "
                "admin`, or set FACESERVE_AUTH=disabled explicitly"
            )
        return cls(
            store,
            enabled=enabled,
            configured=configured,
            rate_limits=settings.rate_limits,
            burst_s=settings.rate_limit_burst_s,
            retention_days=settings.audit_retention_days,
            metrics_public=settings.metrics_public,
        )

    async def _db(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.to_thread(partial(outages_as_unavailable, call, *args, **kwargs))

    # -- authentication --

    async def _cached(self, kind: str, key: bytes | str, load: Callable[[], KeyRecord | None]):
        now = time.monotonic()
        hit = self._cache.get((kind, key))
        if hit is not None and hit[0] > now:
            return hit[1]
        record = await self._db(load)
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[(kind, key)] = (now + CACHE_TTL_S, record)
        return record

    async def authenticate(self, secret: str | None, client: str | None) -> Principal:
        """The caller of a REST request by its bearer secret; Unauthenticated without a
        usable key (after spending from the client address's bucket, against guessing)."""
        if not self.enabled:
            return OPEN
        record = None
        if secret:
            digest = secret_digest(secret)
            record = self._configured_by_digest.get(digest)
            if record is None and self.store is not None:
                store = self.store
                record = await self._cached("digest", digest, lambda: store.find_by_digest(digest))
        if record is None:
            await self.rate_limit(None, client)
            if not secret:
                raise Unauthenticated(
                    "an API key is required: send `Authorization: Bearer <secret>` or `X-API-Key`"
                )
            raise Unauthenticated("the API key is not valid")
        return self._usable(record)

    async def sigv4_key(self, key_id: str) -> tuple[Principal, bytes] | None:
        """The caller and SigV4 first-step key of an access key id; None if unknown."""
        record = self._configured_by_id.get(key_id)
        if record is None and self.store is not None:
            store = self.store
            record = await self._cached("id", key_id, lambda: store.find_by_id(key_id))
        if record is None:
            return None
        return self._usable(record), record.signing_key

    @staticmethod
    def _usable(record: KeyRecord) -> Principal:
        if record.revoked_at is not None:
            raise Unauthenticated("the API key was revoked")
        if record.expires_at is not None and record.expires_at <= datetime.now(UTC):
            raise Unauthenticated("the API key has expired")
        scope = None if record.collections is None else frozenset(record.collections)
        return Principal(record.key_id, record.role, scope)

    # -- authorization --

    def authorize(
        self,
        principal: Principal,
        role: str,
        collection: str | None = None,
        *,
        scoped: bool = True,
    ) -> None:
        """Forbidden unless the caller's role reaches `role`; a collection outside its scope
        is NotFound (a scoped key does not learn that others exist). `scoped=False`: the
        operation spans collections, so a scoped key may not run it at all."""
        if not principal.may(role):
            raise Forbidden(f"a {principal.role} key may not do this (it needs {role})")
        if principal.collections is not None:
            if not scoped:
                raise Forbidden("a key scoped to collections may not do this")
            if collection is not None and collection not in principal.collections:
                raise NotFound(f"collection {collection!r} not found")

    # -- rate limits --

    async def rate_limit(self, principal: Principal | None, client: str | None) -> None:
        """Take a token from the key's bucket (or the client address's); RateLimited if none."""
        if self.store is None or not self.enabled:
            return
        if principal is not None and principal.key_id is not None:
            kind, bucket = principal.role, f"key:{principal.key_id}"
        else:
            kind, bucket = ANONYMOUS, f"ip:{client or '?'}"
        rate = float(self.rate_limits.get(kind, 0) or 0)
        if rate <= 0:
            return
        burst = max(1.0, rate * self.burst_s)
        wait = await self._db(self.store.take_token, bucket, rate, burst)
        if wait:
            raise RateLimited(
                f"rate limit of {rate:g} requests/s exceeded; retry after {wait} s", wait
            )

    # -- audit --

    async def record(self, entry: AuditEntry) -> None:
        """Queue one audit entry; a background flush writes the queue in one INSERT within
        `AUDIT_FLUSH_S` (so a request pays no audit round trip; a crash of this process may
        lose that fraction of a second of entries)."""
        if self.store is None:
            return
        self._pending.append(entry)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        await asyncio.sleep(AUDIT_FLUSH_S)
        await self.flush_audit()

    async def flush_audit(self) -> None:
        """Write every queued entry now, in order (before reading the log or erasing)."""
        if self.store is None:
            return
        if self._flush_lock is None:
            self._flush_lock = asyncio.Lock()
        async with self._flush_lock:
            while self._pending:
                batch, self._pending = self._pending[:500], self._pending[500:]
                try:
                    await self._db(self.store.append_audit, batch)
                except Exception:  # noqa: BLE001 - the answers are sent; say what was lost
                    log.exception("could not append %d entries to the audit log", len(batch))
            if time.monotonic() >= self._next_prune:
                self._next_prune = time.monotonic() + PRUNE_EVERY_S
                try:
                    await self._db(self.store.prune_audit, self.retention_days)
                except Exception:  # noqa: BLE001 - retried at the next flush's hour
                    log.exception("could not prune the audit log")

    # -- keys and audit, for admins --

    async def create_key(
        self, role: str, collections: Sequence[str] | None, expires_in_days: int | None
    ) -> tuple[KeyRecord, str]:
        return await self._db(self._store().create_key, role, collections, expires_in_days)

    async def list_keys(self) -> list[KeyRecord]:
        return await self._db(self._store().list_keys)

    async def revoke_key(self, key_id: str) -> KeyRecord:
        record = await self._db(self._store().revoke_key, key_id)
        self._cache.clear()  # here at once; other replicas within CACHE_TTL_S
        return record

    async def audit_page(self, **filters: Any) -> tuple[list[dict[str, Any]], str | None]:
        await self.flush_audit()  # what this replica queued is in the answer
        return await self._db(self._store().audit_page, **filters)

    def _store(self) -> SecurityStore:
        if self.store is None:
            raise NotFound("this service keeps no keys or audit log (no database configured)")
        return self.store


def _secret(record: KeyRecord) -> str:
    return record.signing_key[4:].decode()


def bootstrap_admin_key(settings: Any, store: SecurityStore) -> tuple[str, str] | None:
    """On loopback, with auth on and no key anywhere, make a first admin key and return
    (key_id, secret) for `faceserve serve` to print once; otherwise None."""
    if settings.auth == "disabled" or settings.admin_key or settings.rekognition.keys:
        return None
    if not is_loopback(settings.host) or store.count_usable_keys() > 0:
        return None
    record, secret = store.create_key("admin", None, None)
    return record.key_id, secret
