"""PostgreSQL storage: collections in a control schema, one schema per collection, vectors
behind `VectorIndex` (pgvector by default). No Ray, no HTTP."""

from serve_app.store.database import create_engine_for
from serve_app.store.embedded import EmbeddedPostgres, EmbeddedPostgresError
from serve_app.store.records import CollectionRecord, FaceRecord, NewFace, NewImage
from serve_app.store.store import Store
from serve_app.store.vectors import PgVectorIndex, VectorIndex, vector_indexes_for
from serve_app.store.versions import migrate

__all__ = [
    "CollectionRecord",
    "EmbeddedPostgres",
    "EmbeddedPostgresError",
    "FaceRecord",
    "NewFace",
    "NewImage",
    "PgVectorIndex",
    "Store",
    "VectorIndex",
    "create_engine_for",
    "migrate",
    "vector_indexes_for",
]
