"""Control schema: each collection's vector options (e.g. Pinecone's cloud and region).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "faceserve"


def upgrade() -> None:
    # Existing collections are pgvector ones, which take no options: '{}' is what they have.
    op.add_column(
        "collections",
        sa.Column("vector_options", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_column("collections", "vector_options", schema=SCHEMA)
