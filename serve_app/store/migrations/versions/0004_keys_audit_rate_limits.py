"""Control schema: API keys (hashed), the append-only audit log, rate-limit token buckets.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "faceserve"


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.Text, primary_key=True),
        sa.Column("secret_digest", sa.LargeBinary, nullable=False, unique=True),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("collections", ARRAY(sa.Text)),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True)),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        schema=SCHEMA,
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("key_id", sa.Text),
        sa.Column("client", sa.Text),
        sa.Column("operation", sa.Text, nullable=False),
        sa.Column("collection", sa.Text),
        sa.Column("face_ids", ARRAY(sa.Text), nullable=False, server_default=sa.text("'{}'")),
        sa.Column("person_ids", ARRAY(sa.Text), nullable=False, server_default=sa.text("'{}'")),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("detail", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        schema=SCHEMA,
    )
    op.create_index("audit_log_at", "audit_log", ["at"], schema=SCHEMA)
    op.create_table(
        "rate_buckets",
        sa.Column("bucket", sa.Text, primary_key=True),
        sa.Column("tokens", sa.Float, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        schema=SCHEMA,
        prefixes=["UNLOGGED"],  # buckets need no crash safety, and skip a WAL flush a request
    )


def downgrade() -> None:
    op.drop_table("rate_buckets", schema=SCHEMA)
    op.drop_index("audit_log_at", "audit_log", schema=SCHEMA)
    op.drop_table("audit_log", schema=SCHEMA)
    op.drop_table("api_keys", schema=SCHEMA)
