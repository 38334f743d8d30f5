"""Vector indexes behind one interface: pgvector (default) and, later, Pinecone."""

from serve_app.store.vectors.base import VectorIndex
from serve_app.store.vectors.pgvector import PgVectorIndex

__all__ = ["PgVectorIndex", "VectorIndex"]
