"""Control schema: album jobs and one row per image of a job (the durable work queue).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "faceserve"


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", UUID(as_uuid=False), primary_key=True),
        sa.Column(
            "collection_id",
            UUID(as_uuid=False),
            sa.ForeignKey(f"{SCHEMA}.collections.id", ondelete="CASCADE"),
        ),
        sa.Column("collection_name", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("source_kind", sa.Text, nullable=False),
        sa.Column("options", JSONB, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("listed", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column("ignored_files", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        schema=SCHEMA,
    )
    op.create_index(
        "jobs_collection_created", "jobs", ["collection_name", "created_at"], schema=SCHEMA
    )
    op.create_index("jobs_state", "jobs", ["state"], schema=SCHEMA)
    op.create_table(
        "job_images",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column(
            "job_id",
            UUID(as_uuid=False),
            sa.ForeignKey(f"{SCHEMA}.jobs.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("external_image_id", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False, server_default=sa.text("'pending'")),
        sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("leased_by", sa.Text),
        sa.Column("lease_until", sa.DateTime(timezone=True)),
        sa.Column("faces", sa.Integer),
        sa.Column("reason", sa.Text),
        sa.Column("message", sa.Text),
        sa.Column("content_hash", sa.Text),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("job_id", "key", name="job_images_job_key"),
        schema=SCHEMA,
    )
    op.create_index("job_images_job_state", "job_images", ["job_id", "state", "id"], schema=SCHEMA)
    op.create_index("job_images_finished", "job_images", ["job_id", "finished_at"], schema=SCHEMA)


def downgrade() -> None:
    op.drop_table("job_images", schema=SCHEMA)
    op.drop_table("jobs", schema=SCHEMA)
