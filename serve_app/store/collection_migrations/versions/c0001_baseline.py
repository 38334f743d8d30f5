"""Collection schema baseline: images, persons, faces.

What the store created in every collection schema before Alembic kept their versions (its
"schema version 1"). Nothing to run: a schema is never built from these revisions. A new one
is created from the table definitions in `collection_schema.py` and stamped at the head; one
that existed before is stamped with the revision it was at (control revision 0003).

Revision ID: c0001
Revises:
Create Date: 2026-12-01
"""

from collections.abc import Sequence

revision: str = "c0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
