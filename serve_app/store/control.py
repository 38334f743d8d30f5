"""The control schema's tables, as the store queries them (Alembic revisions create them)."""

from __future__ import annotations

from sqlalchemy import Boolean, Column, DateTime, ForeignKey, Integer, MetaData, Table, Text
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

# Clustering runs (revision 0006): durable, so a restart shows an interrupted run as such.
cluster_runs = Table(
    "cluster_runs",
    metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column(
        "collection_id",
        UUID(as_uuid=False),
        ForeignKey(collections.c.id, ondelete="CASCADE"),
        nullable=False,
    ),
    Column("mode", Text, nullable=False),  # incremental | full
    Column("state", Text, nullable=False),  # running | succeeded | failed | interrupted
    Column("parameters", JSONB, nullable=False),
    Column("result", JSONB),
    Column("error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("heartbeat_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
)

# Per-collection settings of the people features (revision 0006); no row: the defaults.
collection_settings = Table(
    "collection_settings",
    metadata,
    Column(
        "collection_id",
        UUID(as_uuid=False),
        ForeignKey(collections.c.id, ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("match_history", Boolean, nullable=False),
    Column("history_retention_days", Integer, nullable=False),
)
