"""Schema upgrades, by Alembic configured in code (no alembic.ini is needed at runtime).

Two chains of revisions: `migrations/` for the control schema (one `alembic_version` in
it), and `collection_migrations/` for the collection schemas, run once per schema with that
schema's own `alembic_version` table (Alembic's per-schema recipe: `version_table_schema`,
and the revisions' placeholder schema translated to the one being upgraded).
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, select, text

from serve_app.store.control import CONTROL_SCHEMA, collections

log = logging.getLogger(__name__)

STORE_DIR = Path(__file__).resolve().parent
CONTROL_MIGRATIONS = STORE_DIR / "migrations"
COLLECTION_MIGRATIONS = STORE_DIR / "collection_migrations"
# Any fixed 64-bit key: serialises concurrent `migrate()` calls (several replicas starting).
_MIGRATION_LOCK_KEY = 0x66616365736572  # "faceser"


def migrate(engine: Engine) -> None:
    """Bring the control schema to its newest revision, then every collection schema to its.

    One transaction; idempotent and safe to call from several processes at once (an
    advisory lock orders them)."""
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
        conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {CONTROL_SCHEMA}"))
        config = alembic_config()
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
        upgrade_collection_schemas(conn)


def alembic_config(location: Path = CONTROL_MIGRATIONS) -> Config:
    """Alembic's configuration for one chain of revisions (the control schema's by default)."""
    config = Config()
    config.set_main_option("script_location", str(location))
    config.set_main_option("path_separator", "os")
    return config


@lru_cache(maxsize=1)
def _collection_scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config(COLLECTION_MIGRATIONS))


def collection_head() -> str:
    """The newest revision of the collection schemas."""
    head = _collection_scripts().get_current_head()
    assert head is not None, "collection_migrations/ has no revisions"
    return head


def collection_revision(conn: Connection, schema_name: str) -> str | None:
    """The revision a collection schema is at (None: no version table, or no schema)."""
    context = MigrationContext.configure(conn, opts={"version_table_schema": schema_name})
    return context.get_current_revision()


def stamp_collection_schema(conn: Connection, schema_name: str, revision: str = "head") -> None:
    """Record that a collection schema is at `revision` (one just created from the table
    definitions is at the head)."""
    context = MigrationContext.configure(conn, opts={"version_table_schema": schema_name})
    context.stamp(_collection_scripts(), revision)


def upgrade_collection_schemas(conn: Connection) -> int:
    """Run the collection revisions each collection schema lacks; returns how many schemas
    were upgraded. A schema without a version table is left alone (logged): we cannot know
    what it holds; `repair_storage` names and mends what it lacks."""
    head = collection_head()
    schemas = conn.execute(select(collections.c.schema_name).order_by(collections.c.name))
    upgraded = 0
    for schema_name in schemas.scalars().all():
        exists = conn.execute(
            text("SELECT 1 FROM pg_namespace WHERE nspname = :n"), {"n": schema_name}
        ).first()
        if exists is None:
            continue  # dropped behind our back: repair recreates it at the head
        current = collection_revision(conn, schema_name)
        if current == head:
            continue
        if current is None:
            log.warning(
                "collection schema %s has no alembic_version table: not upgraded", schema_name
            )
            continue
        config = alembic_config(COLLECTION_MIGRATIONS)
        config.attributes["connection"] = conn
        config.attributes["schema"] = schema_name
        command.upgrade(config, "head")
        upgraded += 1
    return upgraded
