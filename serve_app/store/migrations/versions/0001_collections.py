"""Control schema: the collections table.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "faceserve"


def upgrade() -> None:
    op.create_table(
        "collections",
        sa.Column("id", UUID(as_uuid=False), primary_key=True),
        sa.Column("name", sa.Text, nullable=False, unique=True),
        sa.Column("schema_name", sa.Text, nullable=False, unique=True),
        sa.Column("model_version", sa.Text, nullable=False),
        sa.Column("embedding_dim", sa.Integer, nullable=False),
        sa.Column("vector_backend", sa.Text, nullable=False, server_default="pgvector"),
        sa.Column("metadata", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("schema_version", sa.Integer, nullable=False),
        sa.CheckConstraint("embedding_dim > 0", name="collections_embedding_dim_positive"),
        # Collection schemas are only ever named from our own uuids.
        sa.CheckConstraint("schema_name ~ '^c_[0-9a-f]{32}$'", name="collections_schema_name"),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("collections", schema=SCHEMA)
