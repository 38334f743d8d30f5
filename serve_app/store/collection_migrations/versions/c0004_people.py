"""Collection schema: people. Confirmed faces, generated and named persons, "not this person"
rejections, and the identification history.

Written out, not derived from today's definition, so that what this revision does never
changes.

Revision ID: c0004
Revises: c0003
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, REAL, UUID

from serve_app.store.collection_schema import PLACEHOLDER

revision: str = "c0004"
down_revision: str | None = "c0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FALSE = sa.text("false")


def _schema() -> str:
    # Alembic writes ALTER TABLE's schema itself, past the placeholder translation: name the
    # schema being upgraded (the one whose alembic_version this run writes).
    return str(op.get_context().version_table_schema)


def upgrade() -> None:
    s = PLACEHOLDER
    real = _schema()
    op.add_column("persons", sa.Column("name", sa.Text), schema=real)
    op.add_column(
        "persons",
        sa.Column("generated", sa.Boolean, nullable=False, server_default=_FALSE),
        schema=real,
    )
    op.add_column(
        "faces",
        sa.Column("confirmed", sa.Boolean, nullable=False, server_default=_FALSE),
        schema=real,
    )
    # Faces already in a person were put there by a client: they are confirmed.
    faces = sa.table("faces", sa.column("confirmed"), sa.column("person_id"), schema=real)
    op.execute(faces.update().where(faces.c.person_id.isnot(None)).values(confirmed=True))
    op.create_table(
        "person_rejections",
        sa.Column(
            "face_id",
            UUID(as_uuid=False),
            sa.ForeignKey(f"{s}.faces.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "person_id",
            UUID(as_uuid=False),
            sa.ForeignKey(f"{s}.persons.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        schema=s,
    )
    op.create_index("person_rejections_person_id", "person_rejections", ["person_id"], schema=s)
    op.create_table(
        "identifications",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column(
            "person_id", UUID(as_uuid=False), sa.ForeignKey(f"{s}.persons.id", ondelete="CASCADE")
        ),
        sa.Column("similarity", REAL),
        sa.Column("bounding_box", JSONB, nullable=False),
        sa.Column("source", sa.Text),
        sa.Column("key_id", sa.Text),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        schema=s,
    )
    op.create_index("identifications_created_at", "identifications", ["created_at"], schema=s)
    op.create_index("identifications_person_id", "identifications", ["person_id", "seq"], schema=s)


def downgrade() -> None:
    s, real = PLACEHOLDER, _schema()
    op.drop_table("identifications", schema=s)
    op.drop_table("person_rejections", schema=s)
    op.drop_column("faces", "confirmed", schema=real)
    op.drop_column("persons", "generated", schema=real)
    op.drop_column("persons", "name", schema=real)
