"""Checking and repairing a collection's storage: for the operator and the periodic pass.

`Store` hands these calls to a `StorageRepair`. Storage can go missing behind the service's
back (a dropped schema or table, a Pinecone index deleted in its console) or be left
half-written by a crash between PostgreSQL and Pinecone; these find it, in words, and put it
back, with PostgreSQL as the source of truth.
"""

from __future__ import annotations

import logging
import uuid

from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from serve_app.errors import FaceserveError, NotFound
from serve_app.store.access import GONE, CollectionAccess
from serve_app.store.collection_schema import collection_schema_problems, repair_collection_schema
from serve_app.store.control import collections

log = logging.getLogger(__name__)

# First key of the advisory locks that serialise repairs of one collection ("fcr").
_REPAIR_LOCK_CLASS = 0x666372


class StorageRepair:
    """Finds and mends what is missing of collections' storage, through a `CollectionAccess`."""

    def __init__(self, access: CollectionAccess) -> None:
        self._access = access

    def storage_problems(self, name: str) -> list[str]:
        """What is missing (or stuck) of the collection's storage, in words; [] when whole.
        NotFound if there is no such collection; VectorStoreUnavailable if Pinecone cannot
        be asked."""
        with self._access.engine.begin() as conn:
            collection = self._access.collection(conn, name)
            index = self._access.index(collection)
            problems = collection_schema_problems(conn, collection.schema_name)
            return problems + index.storage_problems(conn, collection)

    def repair_storage(self, name: str, *, full: bool = True) -> list[str]:
        """Recreate whatever is missing of the collection's storage (its schema, at the
        current version, empty; vector tables and indexes; a Pinecone index, refilled from
        PostgreSQL), send pending writes and delete orphaned vectors. Returns what was done
        ([] when nothing was needed). Idempotent, and safe beside normal traffic.

        `full=False` (the periodic pass) scans Pinecone for orphans only when its count
        disagrees with PostgreSQL's."""
        with self._access.engine.begin() as conn:
            collection = self._access.collection(
                conn, name, lock="key_share"
            )  # no delete meanwhile
            index = self._access.index(collection)
            conn.execute(
                text("SELECT pg_advisory_xact_lock(:c, :k)"),
                {"c": _REPAIR_LOCK_CLASS, "k": _lock_key(collection.id)},
            )
            done = repair_collection_schema(conn, collection.schema_name)
            done += index.ensure_storage(conn, collection)
        try:
            return done + index.repair(self._access.engine, collection, full=full)
        except DBAPIError as err:
            if getattr(err.orig, "pgcode", None) in GONE:  # deleted while we were at it
                raise NotFound(f"collection {name!r} was deleted") from None
            raise

    def repair_all(self) -> dict[str, list[str]]:
        """`repair_storage` (without a full orphan scan) for every collection, one at a time;
        collection name -> what was done. A collection that fails is logged and reported as
        `["repair failed: ..."]`; the others still run."""
        with self._access.engine.begin() as conn:
            names = list(
                conn.execute(select(collections.c.name).order_by(collections.c.name)).scalars()
            )
        results: dict[str, list[str]] = {}
        for name in names:
            try:
                results[name] = self.repair_storage(name, full=False)
            except NotFound:
                continue  # deleted meanwhile
            except (FaceserveError, SQLAlchemyError) as exc:
                message = (
                    exc.message if isinstance(exc, FaceserveError) else str(exc).splitlines()[0]
                )
                log.warning("repair of collection %s failed: %s", name, message)
                results[name] = [f"repair failed: {message}"]
                continue
            if results[name]:
                log.warning("collection %s repaired: %s", name, "; ".join(results[name]))
        return results


def _lock_key(collection_id: str) -> int:
    """An int4 advisory-lock key for a collection (collisions only serialise more)."""
    return int.from_bytes(uuid.UUID(collection_id).bytes[:4], "big", signed=True)
