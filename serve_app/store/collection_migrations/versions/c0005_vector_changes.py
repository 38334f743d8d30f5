"""Collection schema: the log of vector changes that Search replicas' local indexes follow.

Written out as it is today, not derived from the definition in `collection_schema.py`, so
that what this revision does never changes. Faces indexed before it need no log rows: a
replica builds its local index from `face_vectors` and follows the log from then on.

Revision ID: c0005
Revises: c0004
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from serve_app.store.collection_schema import PLACEHOLDER

revision: str = "c0005"
down_revision: str | None = "c0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


class _Xid8(sa.types.UserDefinedType):
    cache_ok = True

    def get_col_spec(self, **kw: object) -> str:
        return "xid8"


def upgrade() -> None:
    op.create_table(
        "vector_changes",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column(
            "xid",
            _Xid8(),
            nullable=False,
            server_default=sa.text("pg_current_xact_id()"),
        ),
        sa.Column("face_seq", sa.BigInteger, nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        schema=PLACEHOLDER,
    )
    op.create_index("vector_changes_xid", "vector_changes", ["xid"], schema=PLACEHOLDER)


def downgrade() -> None:
    op.drop_table("vector_changes", schema=PLACEHOLDER)
