"""The per-collection PostgreSQL schema: its versioned DDL and the tables the store queries.

Each collection lives in its own schema `c_<32 hex of its uuid>`: the name is derived from
the id we generate, never from user text, and is checked against that pattern before any
SQL is built with it. The DDL is written out per version (not derived from the Table
objects below) so that what version N created never changes; `UPGRADES` carries each
schema from one version to the next, and `migrate()` applies it to every collection.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from functools import lru_cache
from typing import NamedTuple

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

CONTROL_SCHEMA = "faceserve"
SCHEMA_VERSION = 2
_SCHEMA_NAME = re.compile(r"c_[0-9a-f]{32}")


def schema_name_for(collection_id: uuid.UUID) -> str:
    """The schema of the collection with this id."""
    return f"c_{collection_id.hex}"


def quoted_schema(schema_name: str) -> str:
    """`schema_name` double-quoted for SQL, after checking it is one of ours."""
    if not _SCHEMA_NAME.fullmatch(schema_name):
        raise ValueError(f"not a collection schema name: {schema_name!r}")
    return f'"{schema_name}"'


def create_collection_schema(conn: Connection, schema_name: str) -> None:
    """Create the schema and its metadata tables at SCHEMA_VERSION (vectors are the index's):
    version 1, then every upgrade, so a new schema is exactly what an upgraded one is."""
    _run(conn, schema_name, _DDL_V1)
    for version in range(1, SCHEMA_VERSION):
        UPGRADES[version](conn, schema_name)


def drop_collection_schema(conn: Connection, schema_name: str) -> None:
    conn.execute(text(f"DROP SCHEMA IF EXISTS {quoted_schema(schema_name)} CASCADE"))


# The metadata tables of a current schema (vector tables are the vector index's to check).
METADATA_TABLES = ("images", "persons", "faces", "request_tokens")


def table_exists(conn: Connection, schema_name: str, table: str) -> bool:
    """Whether `schema_name.table` exists (False also when the schema does not)."""
    found = conn.execute(
        text("SELECT to_regclass(:name) IS NOT NULL"),
        {"name": f"{quoted_schema(schema_name)}.{table}"},
    )
    return bool(found.scalar_one())


def schema_exists(conn: Connection, schema_name: str) -> bool:
    """Whether the collection schema exists."""
    quoted_schema(schema_name)  # validates
    found = conn.execute(
        text("SELECT 1 FROM pg_namespace WHERE nspname = :name"), {"name": schema_name}
    )
    return found.first() is not None


def collection_schema_problems(conn: Connection, schema_name: str) -> list[str]:
    """What is missing of a collection's metadata schema, in words ([] when whole)."""
    if not schema_exists(conn, schema_name):
        return [f"schema {schema_name} is missing"]
    return [
        f"table {schema_name}.{table} is missing"
        for table in METADATA_TABLES
        if not table_exists(conn, schema_name, table)
    ]


def repair_collection_schema(conn: Connection, schema_name: str) -> list[str]:
    """Recreate what is missing of a collection's metadata schema; returns what was done.

    A missing schema is created whole at SCHEMA_VERSION (the caller records that version).
    Missing tables of an existing schema are created from the versioned DDL made idempotent:
    sound while every upgrade only creates objects, which holds for versions 1-2."""
    if not schema_exists(conn, schema_name):
        create_collection_schema(conn, schema_name)
        return [f"recreated schema {schema_name} (version {SCHEMA_VERSION}, empty)"]
    missing = [t for t in METADATA_TABLES if not table_exists(conn, schema_name, t)]
    if not missing:
        return []
    for version in range(1, SCHEMA_VERSION + 1):
        _run(conn, schema_name, tuple(_idempotent(s) for s in _DDL_BY_VERSION[version]))
    return [f"recreated table {schema_name}.{table} (empty)" for table in missing]


def _idempotent(statement: str) -> str:
    for verb in ("CREATE SCHEMA", "CREATE TABLE", "CREATE INDEX"):
        if statement.startswith(verb + " "):
            return statement.replace(verb, verb + " IF NOT EXISTS", 1)
    raise ValueError(f"not a CREATE statement: {statement[:40]!r}")


_DDL_V1 = (
    "CREATE SCHEMA {s}",
    """CREATE TABLE {s}.images (
        id uuid PRIMARY KEY,
        external_image_id text,
        width integer NOT NULL,
        height integer NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        data bytea
    )""",
    """CREATE TABLE {s}.persons (
        id uuid PRIMARY KEY,
        external_id text UNIQUE,
        metadata jsonb NOT NULL DEFAULT '{{}}',
        created_at timestamptz NOT NULL DEFAULT now()
    )""",
    """CREATE TABLE {s}.faces (
        id uuid PRIMARY KEY,
        image_id uuid NOT NULL REFERENCES {s}.images (id),
        person_id uuid REFERENCES {s}.persons (id) ON DELETE SET NULL,
        external_image_id text,
        bounding_box jsonb NOT NULL,
        landmarks jsonb NOT NULL,
        confidence real NOT NULL,
        quality jsonb NOT NULL DEFAULT '{{}}',
        metadata jsonb NOT NULL DEFAULT '{{}}',
        created_at timestamptz NOT NULL DEFAULT now(),
        seq bigserial NOT NULL UNIQUE
    )""",
    "CREATE INDEX faces_image_id ON {s}.faces (image_id)",
    "CREATE INDEX faces_person_id ON {s}.faces (person_id)",
)

# Version 2: replies remembered per client request token, for idempotent retries (24 h).
_DDL_V2 = (
    """CREATE TABLE {s}.request_tokens (
        token text PRIMARY KEY,
        operation text NOT NULL,
        fingerprint text NOT NULL,
        response jsonb,
        created_at timestamptz NOT NULL DEFAULT now()
    )""",
    "CREATE INDEX request_tokens_created_at ON {s}.request_tokens (created_at)",
)


def _run(conn: Connection, schema_name: str, statements: tuple[str, ...]) -> None:
    s = quoted_schema(schema_name)
    for statement in statements:
        conn.execute(text(statement.format(s=s)))


_DDL_BY_VERSION = {1: _DDL_V1, 2: _DDL_V2}

# from_version -> step that upgrades one collection schema to from_version + 1.
UPGRADES: dict[int, Callable[[Connection, str], None]] = {
    1: lambda conn, schema_name: _run(conn, schema_name, _DDL_V2),
}


def upgrade_collection_schemas(conn: Connection) -> int:
    """Bring every collection schema to SCHEMA_VERSION; returns how many were upgraded."""
    rows = conn.execute(
        text(
            f"SELECT id, schema_name, schema_version FROM {CONTROL_SCHEMA}.collections "
            "WHERE schema_version < :current FOR UPDATE"
        ),
        {"current": SCHEMA_VERSION},
    ).all()
    for row in rows:
        for version in range(row.schema_version, SCHEMA_VERSION):
            UPGRADES[version](conn, row.schema_name)
        conn.execute(
            text(f"UPDATE {CONTROL_SCHEMA}.collections SET schema_version = :v WHERE id = :id"),
            {"v": SCHEMA_VERSION, "id": row.id},
        )
    return len(rows)


class CollectionTables(NamedTuple):
    images: Table
    persons: Table
    faces: Table
    request_tokens: Table


@lru_cache(maxsize=1024)
def tables_for(schema_name: str) -> CollectionTables:
    """SQLAlchemy Table objects for querying one collection's schema (current version)."""
    quoted_schema(schema_name)  # validates
    metadata = MetaData(schema=schema_name)
    images = Table(
        "images",
        metadata,
        Column("id", UUID(as_uuid=False), primary_key=True),
        Column("external_image_id", Text),
        Column("width", Integer, nullable=False),
        Column("height", Integer, nullable=False),
        Column("created_at", DateTime(timezone=True)),
        # The uploaded photo, only with FACESERVE_STORE_IMAGES (biometric data: store the least).
        Column("data", LargeBinary),
    )
    persons = Table(
        "persons",
        metadata,
        Column("id", UUID(as_uuid=False), primary_key=True),
        Column("external_id", Text),
        Column("metadata", JSONB),
        Column("created_at", DateTime(timezone=True)),
    )
    faces = Table(
        "faces",
        metadata,
        Column("id", UUID(as_uuid=False), primary_key=True),
        Column("image_id", UUID(as_uuid=False), ForeignKey(images.c.id), nullable=False),
        Column("person_id", UUID(as_uuid=False), ForeignKey(persons.c.id)),
        Column("external_image_id", Text),
        Column("bounding_box", JSONB, nullable=False),
        Column("landmarks", JSONB, nullable=False),
        Column("confidence", Float(precision=24), nullable=False),
        Column("quality", JSONB, nullable=False),
        Column("metadata", JSONB, nullable=False),
        Column("created_at", DateTime(timezone=True)),
        Column("seq", BigInteger),
    )
    request_tokens = Table(
        "request_tokens",
        metadata,
        Column("token", Text, primary_key=True),
        Column("operation", Text, nullable=False),
        Column("fingerprint", Text, nullable=False),
        Column("response", JSONB),
        Column("created_at", DateTime(timezone=True)),
    )
    return CollectionTables(images, persons, faces, request_tokens)
