"""The Search deployment: owns the database connection pool (metadata + vector index)."""

from __future__ import annotations

import asyncio
from typing import Any

from ray import serve

from serve_app.errors import InvalidParameter

# The storage port's methods (see serve_app/service/ports.py); nothing else is callable.
STORAGE_METHODS = frozenset(
    {
        "create_collection",
        "get_collection",
        "list_collections",
        "delete_collection",
        "add_faces",
        "list_faces",
        "get_faces",
        "get_embedding",
        "delete_faces",
        "search",
        "count_faces",
        "ping",
        "create_person",
        "get_person",
        "list_persons",
        "delete_person",
        "associate_faces",
        "disassociate_faces",
        "merge_persons",
        "search_persons",
        "person_embeddings",
    }
)


@serve.deployment(name="Search", ray_actor_options={"num_cpus": 0.25})
class Search:
    def __init__(self, database_url: str) -> None:
        from serve_app.store.store import Store

        self.store = Store.open(database_url)

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if method not in STORAGE_METHODS:
            raise InvalidParameter(f"unknown storage operation {method!r}")
        return await asyncio.to_thread(getattr(self.store, method), *args, **kwargs)
