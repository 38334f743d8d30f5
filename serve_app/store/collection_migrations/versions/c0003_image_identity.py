"""Collection schema: each image's content hash, and lookups by hash and external id, so an
album job skips an image the collection already holds.

Revision ID: c0003
Revises: c0002
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from serve_app.store.collection_schema import quoted_schema

revision: str = "c0003"
down_revision: str | None = "c0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _schema() -> str:
    # ALTER TABLE is not a Table construct, so the placeholder would not be translated: name
    # the schema being upgraded itself (checked to be one of ours).
    schema = op.get_context().config.attributes["schema"]
    quoted_schema(schema)
    return schema


def upgrade() -> None:
    schema = _schema()
    op.add_column("images", sa.Column("content_hash", sa.Text), schema=schema)
    op.create_index("images_content_hash", "images", ["content_hash"], schema=schema)
    op.create_index("images_external_image_id", "images", ["external_image_id"], schema=schema)


def downgrade() -> None:
    schema = _schema()
    op.drop_index("images_external_image_id", "images", schema=schema)
    op.drop_index("images_content_hash", "images", schema=schema)
    op.drop_column("images", "content_hash", schema=schema)
