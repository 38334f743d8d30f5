"""The control schema's tables, as the store queries them (Alembic revisions create them)."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Integer, MetaData, Table, Text
from sqlalchemy.dialects.postgresql import JSONB, UUID

CONTROL_SCHEMA = "faceserve"

metadata = MetaData(schema=CONTROL_SCHEMA)

collections = Table(
    "collections",
    metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("name", Text, nullable=False, unique=True),
    Column("schema_name", Text, nullable=False, unique=True),
    Column("model_version", Text, nullable=False),
    Column("embedding_dim", Integer, nullable=False),
    Column("vector_backend", Text, nullable=False),
    Column("metadata", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("vector_options", JSONB, nullable=False),
)
