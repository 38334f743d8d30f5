"""Vector indexes behind one interface: pgvector (default) and Pinecone."""

from __future__ import annotations

from typing import TYPE_CHECKING

from serve_app.store.vectors.base import VectorIndex
from serve_app.store.vectors.pgvector import PgVectorIndex

if TYPE_CHECKING:
    from serve_app.config import Settings

__all__ = ["PgVectorIndex", "VectorIndex", "vector_indexes_for"]


def vector_indexes_for(settings: Settings) -> list[VectorIndex]:
    """The backends the settings configure: pgvector always (with replica-local indexes
    unless FACESERVE_LOCAL_INDEX is off), Pinecone when FACESERVE_PINECONE_API_KEY is set
    (InvalidParameter if its other settings are wrong)."""
    indexes: list[VectorIndex] = [PgVectorIndex(settings.local_index_config)]
    if settings.pinecone_api_key:
        # Imported only when configured: the SDK is a heavy import nobody else needs.
        from serve_app.store.vectors.pinecone import PineconeIndex

        indexes.append(
            PineconeIndex(
                settings.pinecone_api_key,
                settings.pinecone_host,
                settings.pinecone_index_prefix,
                settings.pinecone_cloud,
                settings.pinecone_region,
            )
        )
    return indexes
