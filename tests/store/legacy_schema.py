"""A database as the previous release left it, recorded: the control schema at Alembic
revision 0002 and collection schemas written by its DDL (its "schema versions" 1 and 2,
kept in `collections.schema_version`), with pgvector tables as it made them.

Verbatim copies of what that code executed: they must never follow today's definitions.
"""

from __future__ import annotations

import json
import uuid

import numpy as np
from alembic import command
from sqlalchemy import Engine, text

from serve_app.store.versions import alembic_config

SCHEMA_V1 = (
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
SCHEMA_V2 = (
    """CREATE TABLE {s}.request_tokens (
        token text PRIMARY KEY,
        operation text NOT NULL,
        fingerprint text NOT NULL,
        response jsonb,
        created_at timestamptz NOT NULL DEFAULT now()
    )""",
    "CREATE INDEX request_tokens_created_at ON {s}.request_tokens (created_at)",
)
PGVECTOR = (
    "CREATE TABLE {s}.face_vectors ("
    " face_id uuid PRIMARY KEY REFERENCES {s}.faces (id) ON DELETE CASCADE,"
    " embedding vector({dim}) NOT NULL)",
    "ALTER TABLE {s}.face_vectors ALTER COLUMN embedding SET STORAGE PLAIN",
    "CREATE INDEX face_vectors_embedding_hnsw ON {s}.face_vectors "
    "USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)",
)


def previous_release_database(engine: Engine) -> None:
    """The control schema as the previous release migrated it (revisions 0001-0002)."""
    with engine.begin() as conn:
        conn.execute(text("CREATE SCHEMA IF NOT EXISTS faceserve"))
        config = alembic_config()
        config.attributes["connection"] = conn
        command.upgrade(config, "0002")


def previous_release_collection(
    engine: Engine, name: str, version: int, vectors: np.ndarray
) -> tuple[str, list[str]]:
    """A pgvector collection made as the previous release made it at schema `version` (1 or
    2), holding one image with one face per vector; returns its schema and face ids."""
    collection_id = uuid.uuid4()
    schema = f"c_{collection_id.hex}"
    s, dim = f'"{schema}"', vectors.shape[1]
    image_id, face_ids = str(uuid.uuid4()), [str(uuid.uuid4()) for _ in vectors]
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO faceserve.collections (id, name, schema_name, model_version, "
                "embedding_dim, vector_backend, metadata, schema_version) VALUES "
                "(:id, :name, :schema, 'test-model', :dim, 'pgvector', '{}', :version)"
            ),
            {
                "id": str(collection_id),
                "name": name,
                "schema": schema,
                "dim": dim,
                "version": version,
            },
        )
        ddl = SCHEMA_V1 + (SCHEMA_V2 if version >= 2 else ()) + PGVECTOR
        for statement in ddl:
            conn.execute(text(statement.format(s=s, dim=dim)))
        conn.execute(
            text(
                f"INSERT INTO {s}.images (id, external_image_id, width, height) "
                "VALUES (:id, 'old.jpg', 100, 80)"
            ),
            {"id": image_id},
        )
        for face_id, vector in zip(face_ids, vectors, strict=True):
            conn.execute(
                text(
                    f"INSERT INTO {s}.faces (id, image_id, external_image_id, bounding_box, "
                    "landmarks, confidence) VALUES (:id, :image, 'old.jpg', :box, '[]', 99)"
                ),
                {"id": face_id, "image": image_id, "box": json.dumps({"left": 0.1})},
            )
            conn.execute(
                text(f"INSERT INTO {s}.face_vectors VALUES (:id, CAST(:v AS vector))"),
                {"id": face_id, "v": str([float(x) for x in vector])},
            )
    return schema, face_ids
