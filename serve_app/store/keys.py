"""API keys in the control schema: created with a random secret shown once, kept as a digest,
listed, revoked. Roles and what they may do are the service layer's (`service/access.py`)."""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, func, select

from serve_app.errors import InvalidParameter, NotFound
from serve_app.store import validation as check
from serve_app.store.control import api_keys

ROLES = ("read", "write", "admin")
KEY_ID = re.compile(r"fsk_[0-9a-f]{16}")
MAX_EXPIRY_DAYS = 3650


def secret_digest(secret: str) -> bytes:
    """SHA-256("AWS4" + secret): what is stored, what a bearer secret is checked against, and
    (for secrets of 61+ characters, as ours are) the HMAC key of SigV4's first step."""
    return hashlib.sha256(b"AWS4" + secret.encode()).digest()


@dataclass(frozen=True)
class KeyRecord:
    """A key as stored, without its secret. `collections` None: every collection."""

    key_id: str
    role: str
    collections: tuple[str, ...] | None
    created_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None
    # SigV4's first HMAC key: the digest for stored keys, b"AWS4" + secret for configured ones.
    signing_key: bytes = b""

    def to_json(self) -> dict[str, object]:
        def iso(value: datetime | None) -> str | None:
            return None if value is None else value.isoformat()

        return {
            "key_id": self.key_id,
            "role": self.role,
            "collections": None if self.collections is None else list(self.collections),
            "created_at": iso(self.created_at),
            "expires_at": iso(self.expires_at),
            "revoked_at": iso(self.revoked_at),
        }


def _record(row: object) -> KeyRecord:
    cols = row.collections  # type: ignore[attr-defined]
    return KeyRecord(
        key_id=row.key_id,  # type: ignore[attr-defined]
        role=row.role,  # type: ignore[attr-defined]
        collections=None if cols is None else tuple(cols),
        created_at=row.created_at,  # type: ignore[attr-defined]
        expires_at=row.expires_at,  # type: ignore[attr-defined]
        revoked_at=row.revoked_at,  # type: ignore[attr-defined]
        signing_key=bytes(row.secret_digest),  # type: ignore[attr-defined]
    )


def check_role(role: object) -> str:
    if role not in ROLES:
        raise InvalidParameter(f"role must be one of {', '.join(ROLES)}")
    return str(role)


def create_key(
    conn: Connection,
    role: str,
    collections: Sequence[str] | None = None,
    expires_in_days: int | None = None,
) -> tuple[KeyRecord, str]:
    """A new key and its secret (the only time the secret exists outside the client)."""
    role = check_role(role)
    names: list[str] | None = None
    if collections is not None:
        names = sorted({check.collection_name(n) for n in collections})
        if not names:
            raise InvalidParameter("collections must name at least one collection, or be absent")
    expires_at = None
    if expires_in_days is not None:
        days = check.positive_int("expires_in_days", expires_in_days, maximum=MAX_EXPIRY_DAYS)
        expires_at = func.now() + timedelta(days=days)
    key_id = "fsk_" + secrets.token_hex(8)
    secret = secrets.token_urlsafe(48)  # 64 characters
    row = conn.execute(
        api_keys.insert()
        .values(
            key_id=key_id,
            secret_digest=secret_digest(secret),
            role=role,
            collections=names,
            expires_at=expires_at,
        )
        .returning(api_keys)
    ).one()
    return _record(row), secret


def list_keys(conn: Connection) -> list[KeyRecord]:
    """Every key, revoked ones too, oldest first."""
    rows = conn.execute(select(api_keys).order_by(api_keys.c.created_at, api_keys.c.key_id))
    return [_record(r) for r in rows]


def revoke_key(conn: Connection, key_id: str) -> KeyRecord:
    """Revoke a key (idempotent); NotFound for an unknown id."""
    if not isinstance(key_id, str) or not KEY_ID.fullmatch(key_id):
        raise NotFound(f"key {str(key_id)[:40]!r} not found")
    conn.execute(
        api_keys.update()
        .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=func.now())
    )
    row = conn.execute(select(api_keys).where(api_keys.c.key_id == key_id)).one_or_none()
    if row is None:
        raise NotFound(f"key {key_id!r} not found")
    return _record(row)


def find_by_digest(conn: Connection, digest: bytes) -> KeyRecord | None:
    row = conn.execute(select(api_keys).where(api_keys.c.secret_digest == digest)).one_or_none()
    return None if row is None else _record(row)


def find_by_id(conn: Connection, key_id: str) -> KeyRecord | None:
    if not KEY_ID.fullmatch(key_id):
        return None
    row = conn.execute(select(api_keys).where(api_keys.c.key_id == key_id)).one_or_none()
    return None if row is None else _record(row)


def count_usable(conn: Connection) -> int:
    """Keys neither revoked nor expired."""
    query = (
        select(func.count())
        .select_from(api_keys)
        .where(
            api_keys.c.revoked_at.is_(None),
            (api_keys.c.expires_at.is_(None)) | (api_keys.c.expires_at > func.now()),
        )
    )
    return int(conn.execute(query).scalar_one())
