"""Collection schema: replies remembered per client request token, for idempotent retries.

(The store's former "schema version 2".) Written out as it was, not derived from today's
definition, so that what this revision does never changes.

Revision ID: c0002
Revises: c0001
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from serve_app.store.collection_schema import PLACEHOLDER

revision: str = "c0002"
down_revision: str | None = "c0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "request_tokens",
        sa.Column("token", sa.Text, primary_key=True),
        sa.Column("operation", sa.Text, nullable=False),
        sa.Column("fingerprint", sa.Text, nullable=False),
        sa.Column("response", JSONB),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        schema=PLACEHOLDER,
    )
    op.create_index(
        "request_tokens_created_at", "request_tokens", ["created_at"], schema=PLACEHOLDER
    )


def downgrade() -> None:
    op.drop_table("request_tokens", schema=PLACEHOLDER)
