"""Reconciling one FaceCollection resource with the store: create, check, repair, delete.

Every step is idempotent: the operator may run it twice for one event (a watch replays
objects on reconnect), on every timer tick, and after its own crash.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from serve_app.errors import AlreadyExists, NotFound
from serve_app.kube.spec import FaceCollectionSpec, applied_of, immutable_changes
from serve_app.store.records import CollectionRecord

log = logging.getLogger(__name__)

# Where a collection records the resource that owns it (shown in the collection's metadata).
OWNER_KEY = "kubernetes"


@dataclass(frozen=True)
class ResourceRef:
    """The FaceCollection being reconciled: the collection is named after it."""

    namespace: str
    name: str
    uid: str

    def owner(self) -> dict[str, str]:
        return {"namespace": self.namespace, "name": self.name, "uid": self.uid}


@dataclass(frozen=True)
class Outcome:
    """The result of a reconcile, ready to become the resource's status."""

    ready: bool
    reason: str
    message: str
    collection: CollectionRecord | None = None
    created: bool = False
    repaired: list[str] = field(default_factory=list)

    def status_fields(self) -> dict[str, Any]:
        """The status fields that describe the collection (empty when there is none)."""
        c = self.collection
        if c is None:
            return {}
        fields: dict[str, Any] = {
            "collectionId": c.id,
            "schema": c.schema_name,
            "modelVersion": c.model_version,
            "vectorBackend": c.vector_backend,
            "applied": applied_of(c),
        }
        if c.face_count is not None:
            fields["faces"] = c.face_count
        index_name = c.vector_options.get("index_name")
        if index_name:
            fields["pineconeIndex"] = index_name
        return fields


class Reconciler:
    """Turns FaceCollection specs into collections of `store` (a `serve_app.store.Store`)."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def reconcile(self, ref: ResourceRef, spec: FaceCollectionSpec) -> Outcome:
        """Make the collection exist as `spec` says, whole; never change an immutable field.

        Store errors other than the ones handled here propagate: the caller decides whether
        they are worth a retry (database down) or not (a spec the store refuses)."""
        created = False
        collection = self._existing(ref.name)
        if collection is None:
            collection, created = self._create(ref, spec)
        if not _owned_by(collection, ref):
            owner = collection.metadata.get(OWNER_KEY)
            return Outcome(
                False,
                "NameConflict",
                f"a collection named {ref.name!r} already exists and is not managed by this "
                f"FaceCollection ({_owner_text(owner)}); it was left untouched",
            )
        repaired: list[str] = []
        if not created and self.store.storage_problems(ref.name):
            repaired = self.store.repair_storage(ref.name)
            log.warning("collection %s: repaired %s", ref.name, "; ".join(repaired))
        collection = self.store.get_collection(ref.name)  # with its face count
        changes = immutable_changes(spec, collection)
        if changes:
            return Outcome(
                False,
                "ImmutableFieldChanged",
                "refused, nothing was changed: "
                + "; ".join(changes)
                + ". The collection keeps what it was created with; revert the spec, or create "
                "a new FaceCollection and re-index into it",
                collection,
                created,
                repaired,
            )
        if created:
            message = f"created collection {ref.name!r} ({collection.model_version}, "
            message += f"{collection.vector_backend})"
            return Outcome(True, "Created", message, collection, created, repaired)
        if repaired:
            message = "repaired drift: " + "; ".join(repaired)
            return Outcome(True, "Repaired", message, collection, created, repaired)
        return Outcome(True, "Reconciled", "storage is in place", collection)

    def delete(self, ref: ResourceRef, deletion_policy: str) -> str:
        """Honour `deletionPolicy` for a deleted resource; returns what was done."""
        if deletion_policy != "Delete":
            return f"deletionPolicy {deletion_policy}: collection {ref.name!r} and its faces kept"
        collection = self._existing(ref.name)
        if collection is None:
            return f"collection {ref.name!r} was already gone"
        if not _owned_by(collection, ref):
            return f"collection {ref.name!r} is not managed by this resource: left untouched"
        try:
            self.store.delete_collection(ref.name)
        except NotFound:
            return f"collection {ref.name!r} was already gone"
        return f"deletionPolicy Delete: collection {ref.name!r} and its faces deleted"

    def _existing(self, name: str) -> CollectionRecord | None:
        try:  # uncounted: the control row alone, readable even when the schema was dropped
            return self.store.get_collection(name, counted=False)
        except NotFound:
            return None

    def _create(self, ref: ResourceRef, spec: FaceCollectionSpec) -> tuple[CollectionRecord, bool]:
        # The description stays on the resource: it may change, a collection's metadata not.
        metadata: dict[str, Any] = {OWNER_KEY: ref.owner()}
        try:
            record = self.store.create_collection(
                ref.name,
                spec.model_version,
                spec.embedding_dim,
                vector_backend=spec.vector_backend,
                metadata=metadata,
                vector_options=spec.vector_options or None,
            )
        except AlreadyExists:  # a concurrent create (a replayed event) won the race
            return self.store.get_collection(ref.name, counted=False), False
        return record, True


def _owned_by(collection: CollectionRecord, ref: ResourceRef) -> bool:
    """Whether the collection was created by this very resource (same uid)."""
    owner = collection.metadata.get(OWNER_KEY)
    return isinstance(owner, dict) and owner.get("uid") == ref.uid


def _owner_text(owner: Any) -> str:
    if isinstance(owner, dict) and owner.get("name"):
        return f"it belongs to FaceCollection {owner.get('namespace')}/{owner.get('name')}"
    return "it was created through the API"
