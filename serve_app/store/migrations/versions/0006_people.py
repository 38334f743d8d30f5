"""Control schema: clustering runs, and each collection's identification-history setting.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "faceserve"


def upgrade() -> None:
    op.create_table(
        "cluster_runs",
        sa.Column("id", UUID(as_uuid=False), primary_key=True),
        sa.Column(
            "collection_id",
            UUID(as_uuid=False),
            sa.ForeignKey(f"{SCHEMA}.collections.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("mode", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("parameters", JSONB, nullable=False),
        sa.Column("result", JSONB),
        sa.Column("error", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        schema=SCHEMA,
    )
    op.create_index(
        "cluster_runs_collection", "cluster_runs", ["collection_id", "created_at"], schema=SCHEMA
    )
    op.create_table(
        "collection_settings",
        sa.Column(
            "collection_id",
            UUID(as_uuid=False),
            sa.ForeignKey(f"{SCHEMA}.collections.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("match_history", sa.Boolean, nullable=False),
        sa.Column("history_retention_days", sa.Integer, nullable=False),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("collection_settings", schema=SCHEMA)
    op.drop_table("cluster_runs", schema=SCHEMA)
