"""Bodies of the security routes: API keys, the audit log, a person's erasure receipt."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from serve_app.api.rest.models import RequestBody
from serve_app.store.keys import MAX_EXPIRY_DAYS, KeyRecord

Role = Literal["read", "write", "admin"]


class CreateKeyRequest(RequestBody):
    role: Role = Field(description="`read`, `write` or `admin`.")
    collections: list[str] | None = Field(
        None,
        min_length=1,
        max_length=100,
        description="Only these collections (by name); absent: every collection.",
    )
    expires_in_days: int | None = Field(
        None, ge=1, le=MAX_EXPIRY_DAYS, description="Refused after this many days; absent: never."
    )


class KeyOut(BaseModel):
    key_id: str
    role: Role
    collections: list[str] | None
    created_at: str | None
    expires_at: str | None
    revoked_at: str | None = None

    @classmethod
    def of(cls, record: KeyRecord) -> KeyOut:
        return cls.model_validate(record.to_json())


class CreatedKey(KeyOut):
    secret: str = Field(description="Shown this once only; send it as `Authorization: Bearer`.")


class KeyList(BaseModel):
    keys: list[KeyOut]


class AuditEntryOut(BaseModel):
    id: int
    at: str
    key_id: str | None
    client: str | None
    operation: str
    collection: str | None
    face_ids: list[str]
    person_ids: list[str]
    status: int
    detail: dict[str, Any]


class AuditPage(BaseModel):
    entries: list[AuditEntryOut]
    next_cursor: str | None


class ErasureReceipt(BaseModel):
    collection: str
    erased: dict[str, int] = Field(
        description="What was deleted, by kind (persons, faces, vectors, photos, …)."
    )
    already_erased: bool = Field(description="Nothing of the person was left to delete.")
