"""The control schema's tables, as the store queries them (Alembic revisions create them)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

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

# API keys: the secret is never stored, only `secret_digest` = SHA-256("AWS4" + secret). That
# digest verifies a bearer secret, and is also the HMAC key SigV4 derives its signing key from
# (HMAC hashes a key longer than its block first), so one key serves REST and Rekognition.
api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", Text, primary_key=True),
    Column("secret_digest", LargeBinary, nullable=False, unique=True),
    Column("role", Text, nullable=False),
    # NULL: every collection; else only these (by name).
    Column("collections", ARRAY(Text)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
)

# Append-only: who did what to which collection, faces and persons, with what result. Never
# an image, an embedding or a secret.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("key_id", Text),
    Column("client", Text),
    Column("operation", Text, nullable=False),
    Column("collection", Text),
    Column("face_ids", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Column("person_ids", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Column("status", Integer, nullable=False),
    Column("detail", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Index("audit_log_at", "at"),
)

# Token buckets of the rate limiter, shared by every Ingress replica. UNLOGGED: no WAL flush
# per request (measured: 0.16 ms instead of 0.5-4 ms a take); a crash only refills buckets.
rate_buckets = Table(
    "rate_buckets",
    metadata,
    Column("bucket", Text, primary_key=True),
    Column("tokens", Float, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    prefixes=["UNLOGGED"],
)

# Album jobs: one row per job, one per image of its source (the durable queue and its record).
jobs = Table(
    "jobs",
    metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("collection_id", UUID(as_uuid=False), ForeignKey(collections.c.id, ondelete="CASCADE")),
    Column("collection_name", Text, nullable=False),
    Column("source", Text, nullable=False),
    Column("source_kind", Text, nullable=False),
    Column("options", JSONB, nullable=False),
    Column("state", Text, nullable=False),
    Column("error", Text),
    # Whether every image of the source has its row (listing is resumed after a restart).
    Column("listed", Boolean, nullable=False, server_default=text("false")),
    # Files of the source that are not images by their name (not queued).
    Column("ignored_files", Integer, nullable=False, server_default=text("0")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Index("jobs_collection_created", "collection_name", "created_at"),
    Index("jobs_state", "state"),
)

job_images = Table(
    "job_images",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column(
        "job_id", UUID(as_uuid=False), ForeignKey(jobs.c.id, ondelete="CASCADE"), nullable=False
    ),
    # The object key, relative path or archive member: where the image is read from.
    Column("key", Text, nullable=False),
    Column("external_image_id", Text, nullable=False),
    Column("state", Text, nullable=False, server_default=text("'pending'")),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("leased_by", Text),
    Column("lease_until", DateTime(timezone=True)),
    Column("faces", Integer),
    Column("reason", Text),
    Column("message", Text),
    Column("content_hash", Text),
    Column("finished_at", DateTime(timezone=True)),
    UniqueConstraint("job_id", "key", name="job_images_job_key"),
    Index("job_images_job_state", "job_id", "state", "id"),
    Index("job_images_finished", "job_id", "finished_at"),
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
