"""The per-collection PostgreSQL schema: its tables, defined once, and how they are made.

Each collection lives in its own schema `c_<32 hex of its uuid>`: the name is derived from
the id we generate, never from user text, and is checked against that pattern before any
SQL is built with it.

The tables are defined once, below, in a `MetaData` whose schema is the placeholder
`PLACEHOLDER`; vector backends define theirs the same way (`vectors/pgvector.py`,
`vectors/pinecone_sync.py`). `tables_for` copies them into one collection's schema, and the
store queries those copies; a new schema is created from them (`create_collection_schema`)
and a damaged one repaired from them (`create_missing`). Existing schemas are upgraded by
Alembic revisions in `collection_migrations/`, run once per schema (`database.migrate`), each
schema keeping its own `alembic_version` table.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Sequence
from functools import lru_cache
from typing import NamedTuple

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    DateTime,
    FetchedValue,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, REAL, UUID
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import CreateSchema, DropSchema
from sqlalchemy.types import UserDefinedType

from serve_app.store.control import CONTROL_SCHEMA
from serve_app.store.versions import collection_head, stamp_collection_schema

__all__ = ["CONTROL_SCHEMA", "PLACEHOLDER", "CollectionTables", "in_schema", "tables_for"]
# The schema name the definitions below are written in; replaced by a collection's own.
PLACEHOLDER = "collection"
_SCHEMA_NAME = re.compile(r"c_[0-9a-f]{32}")
_copying = threading.Lock()


class BigSerial(BigInteger):
    """`bigserial`: a bigint filled from its own sequence (SQLAlchemy only makes primary keys
    serial); faces.seq orders faces for paging."""


@compiles(BigSerial, "postgresql")
def _bigserial(type_: BigSerial, compiler: object, **kw: object) -> str:
    return "BIGSERIAL"


class Xid8(UserDefinedType[str]):
    """`xid8`: a 64-bit transaction id (PostgreSQL 13+), read back as text."""

    cache_ok = True

    def get_col_spec(self, **kw: object) -> str:
        return "xid8"


_EMPTY_JSON = text("'{}'::jsonb")

metadata = MetaData(schema=PLACEHOLDER)

images = Table(
    "images",
    metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("external_image_id", Text),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # The uploaded photo, only with FACESERVE_STORE_IMAGES (biometric data: store the least).
    Column("data", LargeBinary),
    # SHA-256 of the file, hex; set by album jobs, which skip an image already indexed.
    Column("content_hash", Text),
    Index("images_content_hash", "content_hash"),
    Index("images_external_image_id", "external_image_id"),
)

persons = Table(
    "persons",
    metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("external_id", Text, unique=True),
    Column("metadata", JSONB, nullable=False, server_default=_EMPTY_JSON),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # A display name the client may set (persons found by clustering start without one).
    Column("name", Text),
    # Made by clustering (a generated `p-...` id), not by a client.
    Column("generated", Boolean, nullable=False, server_default=text("false")),
)

faces = Table(
    "faces",
    metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("image_id", UUID(as_uuid=False), ForeignKey(images.c.id), nullable=False),
    Column("person_id", UUID(as_uuid=False), ForeignKey(persons.c.id, ondelete="SET NULL")),
    Column("external_image_id", Text),
    Column("bounding_box", JSONB, nullable=False),
    Column("landmarks", JSONB, nullable=False),
    Column("confidence", REAL, nullable=False),
    Column("quality", JSONB, nullable=False, server_default=_EMPTY_JSON),
    Column("metadata", JSONB, nullable=False, server_default=_EMPTY_JSON),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("seq", BigSerial, FetchedValue(), nullable=False, unique=True),
    # Put in its person by a user (associated, enrolled, split, merged): clustering never
    # moves it.
    Column("confirmed", Boolean, nullable=False, server_default=text("false")),
    Index("faces_image_id", "image_id"),
    Index("faces_person_id", "person_id"),
)

# Replies remembered per client request token, for idempotent retries (24 h).
request_tokens = Table(
    "request_tokens",
    metadata,
    Column("token", Text, primary_key=True),
    Column("operation", Text, nullable=False),
    Column("fingerprint", Text, nullable=False),
    Column("response", JSONB),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("request_tokens_created_at", "created_at"),
)

# "This face is not that person": clustering never puts the face back in the person.
person_rejections = Table(
    "person_rejections",
    metadata,
    Column(
        "face_id",
        UUID(as_uuid=False),
        ForeignKey(faces.c.id, ondelete="CASCADE"),
        primary_key=True,
    ),
    Column(
        "person_id",
        UUID(as_uuid=False),
        ForeignKey(persons.c.id, ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("person_rejections_person_id", "person_id"),
)

# Identification history (with the collection's `match_history` setting): who was seen,
# when, where in the frame, from which source. No image and no embedding are kept. A
# deleted person's rows go with it.
identifications = Table(
    "identifications",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=True),
    Column("person_id", UUID(as_uuid=False), ForeignKey(persons.c.id, ondelete="CASCADE")),
    Column("similarity", REAL),
    Column("bounding_box", JSONB, nullable=False),
    Column("source", Text),
    Column("key_id", Text),  # the API key that asked, once keys exist
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("identifications_created_at", "created_at"),
    Index("identifications_person_id", "person_id", "seq"),
)


# Every committed change to the collection's vectors, in order, for Search replicas that
# keep a local index of them (vectors/replica.py): a face's vector added or deleted. `xid` is
# the writing transaction: a reader consumes rows of transactions older than every one still
# running, so a change that commits late is never skipped (a sequence alone can be).
vector_changes = Table(
    "vector_changes",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=True),
    Column("xid", Xid8, nullable=False, server_default=text("pg_current_xact_id()")),
    Column("face_seq", BigInteger, nullable=False),
    Column("deleted", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("vector_changes_xid", "xid"),
)


class CollectionTables(NamedTuple):
    images: Table
    persons: Table
    faces: Table
    request_tokens: Table
    vector_changes: Table
    person_rejections: Table
    identifications: Table


def schema_name_for(collection_id: uuid.UUID) -> str:
    """The schema of the collection with this id."""
    return f"c_{collection_id.hex}"


def quoted_schema(schema_name: str) -> str:
    """`schema_name` double-quoted for SQL, after checking it is one of ours."""
    if not _SCHEMA_NAME.fullmatch(schema_name):
        raise ValueError(f"not a collection schema name: {schema_name!r}")
    return f'"{schema_name}"'


@lru_cache(maxsize=1024)
def _schema_metadata(schema_name: str) -> MetaData:
    quoted_schema(schema_name)  # validates
    copies = MetaData(schema=schema_name)
    for table in metadata.sorted_tables:
        table.to_metadata(copies, schema=schema_name)
    return copies


@lru_cache(maxsize=8192)
def in_schema(schema_name: str, definition: Table) -> Table:
    """The table `definition` (written in PLACEHOLDER) as it is in one collection's schema,
    beside that schema's other tables (its foreign keys resolve to them)."""
    copies = _schema_metadata(schema_name)
    with _copying:  # replicas serve requests from several threads
        existing = copies.tables.get(f"{schema_name}.{definition.name}")
        if existing is None:
            return definition.to_metadata(copies, schema=schema_name)
    shape = [(c.name, repr(c.type)) for c in definition.c]
    if [(c.name, repr(c.type)) for c in existing.c] != shape:
        raise ValueError(f"{schema_name}.{definition.name} is already defined otherwise")
    return existing


@lru_cache(maxsize=1024)
def tables_for(schema_name: str) -> CollectionTables:
    """The metadata tables of one collection's schema, to query (vector tables are the
    vector index's)."""
    return CollectionTables(
        *(
            in_schema(schema_name, t)
            for t in (
                images,
                persons,
                faces,
                request_tokens,
                vector_changes,
                person_rejections,
                identifications,
            )
        )
    )


def relation_exists(conn: Connection, schema_name: str, name: str) -> bool:
    """Whether table or index `schema_name.name` exists (False also without the schema)."""
    found = conn.execute(
        text("SELECT to_regclass(:name) IS NOT NULL"),
        {"name": f'{quoted_schema(schema_name)}."{name}"'},
    )
    return bool(found.scalar_one())


# Kept under its old name: vector backends ask it of their tables.
table_exists = relation_exists


def schema_exists(conn: Connection, schema_name: str) -> bool:
    """Whether the collection schema exists."""
    quoted_schema(schema_name)  # validates
    found = conn.execute(
        text("SELECT 1 FROM pg_namespace WHERE nspname = :name"), {"name": schema_name}
    )
    return found.first() is not None


def create_missing(conn: Connection, tables: Sequence[Table]) -> list[tuple[str, str]]:
    """Create those of `tables` (copies in one schema, in dependency order) that are missing,
    with their indexes, and the missing indexes of those present. Returns what was created
    (a new table's indexes too), as ("table" | "index", "schema.name"). A column's
    `info["storage"]` is its STORAGE (pgvector's vectors are PLAIN)."""
    done: list[tuple[str, str]] = []
    for table in tables:
        schema = str(table.schema)
        if not relation_exists(conn, schema, table.name):
            table.create(conn)
            for column in table.c:  # SQLAlchemy has no word for a column's storage
                if "storage" in column.info:
                    conn.execute(
                        text(
                            f"ALTER TABLE {quoted_schema(schema)}.{table.name} ALTER COLUMN"
                            f" {column.name} SET STORAGE {column.info['storage']}"
                        )
                    )
            done.append(("table", f"{schema}.{table.name}"))
            done += [("index", f"{schema}.{i}") for i in sorted(str(i.name) for i in table.indexes)]
            continue
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            if not relation_exists(conn, schema, str(index.name)):
                index.create(conn)
                done.append(("index", f"{schema}.{index.name}"))
    return done


def create_collection_schema(conn: Connection, schema_name: str) -> None:
    """Create the schema and its metadata tables, at the newest revision (vectors are the
    index's to create)."""
    conn.execute(CreateSchema(schema_name))
    create_missing(conn, tables_for(schema_name))
    stamp_collection_schema(conn, schema_name)


def drop_collection_schema(conn: Connection, schema_name: str) -> None:
    quoted_schema(schema_name)  # validates
    conn.execute(DropSchema(schema_name, cascade=True, if_exists=True))


def collection_schema_problems(conn: Connection, schema_name: str) -> list[str]:
    """What is missing of a collection's metadata schema, in words ([] when whole)."""
    if not schema_exists(conn, schema_name):
        return [f"schema {schema_name} is missing"]
    return [
        f"table {schema_name}.{table.name} is missing"
        for table in tables_for(schema_name)
        if not relation_exists(conn, schema_name, table.name)
    ]


def repair_collection_schema(conn: Connection, schema_name: str) -> list[str]:
    """Recreate what is missing of a collection's metadata schema, from the definition;
    returns what was done. A missing schema is created whole, at the newest revision."""
    if not schema_exists(conn, schema_name):
        create_collection_schema(conn, schema_name)
        return [f"recreated schema {schema_name} (revision {collection_head()}, empty)"]
    return [
        f"recreated {kind} {name}" + (" (empty)" if kind == "table" else "")
        for kind, name in create_missing(conn, tables_for(schema_name))
    ]
