"""Collection schema: each image's content hash, and lookups by hash and external id, so an
album job skips an image the collection already holds.

Revision ID: c0003
Revises: c0002
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from serve_app.store.collection_schema import PLACEHOLDER

revision: str = "c0003"
down_revision: str | None = "c0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("images", sa.Column("content_hash", sa.Text), schema=PLACEHOLDER)
    op.create_index("images_content_hash", "images", ["content_hash"], schema=PLACEHOLDER)
    op.create_index("images_external_image_id", "images", ["external_image_id"], schema=PLACEHOLDER)


def downgrade() -> None:
    op.drop_index("images_external_image_id", "images", schema=PLACEHOLDER)
    op.drop_index("images_content_hash", "images", schema=PLACEHOLDER)
    op.drop_column("images", "content_hash", schema=PLACEHOLDER)
