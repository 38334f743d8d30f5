"""Collection schemas keep their own Alembic version: stamp those made before, drop the column.

Until now `collections.schema_version` said which of the store's own upgrade steps a
collection schema had had (1: images, persons, faces; 2: + request_tokens). Each schema now
records its revision in its own `alembic_version` table (`collection_migrations/`), so the
existing ones are stamped with the revision their version was, and the column goes. A schema
that is missing (dropped behind our back) is left to `repair_storage`, which recreates it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from serve_app.store.versions import collection_revision, stamp_collection_schema

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "faceserve"
# The store's former schema versions and the collection revisions they are.
REVISION_OF_VERSION = {1: "c0001", 2: "c0002"}


def upgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(
        sa.text(
            f"SELECT c.schema_name, c.schema_version FROM {SCHEMA}.collections c "
            "JOIN pg_namespace n ON n.nspname = c.schema_name"
        )
    ).all()
    for schema_name, version in rows:
        if collection_revision(conn, schema_name) is None:
            stamp_collection_schema(conn, schema_name, REVISION_OF_VERSION[version])
    op.drop_column("collections", "schema_version", schema=SCHEMA)


def downgrade() -> None:
    op.add_column(
        "collections",
        sa.Column("schema_version", sa.Integer, nullable=False, server_default="2"),
        schema=SCHEMA,
    )
    conn = op.get_bind()
    version_of = {rev: version for version, rev in REVISION_OF_VERSION.items()}
    for (schema_name,) in conn.execute(sa.text(f"SELECT schema_name FROM {SCHEMA}.collections")):
        current = collection_revision(conn, schema_name)
        if current is not None:
            conn.execute(
                sa.text(
                    f"UPDATE {SCHEMA}.collections SET schema_version = :v WHERE schema_name = :s"
                ),
                {"v": version_of[current], "s": schema_name},
            )
            conn.execute(sa.text(f'DROP TABLE "{schema_name}".alembic_version'))
    op.alter_column("collections", "schema_version", server_default=None, schema=SCHEMA)
