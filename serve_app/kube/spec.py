"""The `FaceCollection` resource's spec, parsed and checked the way the CRD's schema does.

The API server enforces the CRD's `openAPIV3Schema`, but the operator must not trust that
(an old CRD, a test server, a hand-edited object): every field is checked here too, and a bad
spec is a permanent failure with a message naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from serve_app.errors import InvalidParameter
from serve_app.store.records import CollectionRecord
from serve_app.store.vectors.pinecone_remote import CLOUDS, check_location
from serve_app.vision.packs.registry import DEFAULT_PACK, PACKS

GROUP = "faceserve.io"
VERSION = "v1alpha1"
PLURAL = "facecollections"
KIND = "FaceCollection"

VECTOR_BACKENDS = ("pgvector", "pinecone")
DELETION_POLICIES = ("Retain", "Delete")
DEFAULT_PINECONE = {"cloud": "aws", "region": "us-east-1"}
_KNOWN_FIELDS = {"modelPack", "vectorBackend", "pinecone", "deletionPolicy", "description"}


@dataclass(frozen=True)
class FaceCollectionSpec:
    """What a FaceCollection asks for. `immutable()` is what may never change once created."""

    model_pack: str = DEFAULT_PACK
    vector_backend: str = "pgvector"
    pinecone: dict[str, str] | None = None  # {"cloud", "region"}, only with the Pinecone backend
    deletion_policy: str = "Retain"
    description: str = ""

    @property
    def model_version(self) -> str:
        cls = PACKS[self.model_pack]
        return f"{cls.name}:{cls.version}"

    @property
    def embedding_dim(self) -> int:
        return PACKS[self.model_pack].embedding_dim

    @property
    def vector_options(self) -> dict[str, str]:
        return dict(self.pinecone or {}) if self.vector_backend == "pinecone" else {}

    def immutable(self) -> dict[str, Any]:
        """The fields fixed at creation, as `status.applied` reports them."""
        applied: dict[str, Any] = {
            "modelPack": self.model_pack,
            "vectorBackend": self.vector_backend,
        }
        if self.vector_backend == "pinecone":
            applied["pinecone"] = dict(self.pinecone or {})
        return applied


def parse_spec(raw: Any) -> FaceCollectionSpec:
    """The spec of a FaceCollection with defaults applied; InvalidParameter naming the field."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise InvalidParameter("spec must be an object")
    unknown = sorted(set(raw) - _KNOWN_FIELDS)
    if unknown:
        raise InvalidParameter(f"unknown spec field(s): {', '.join(unknown)}")
    model_pack = _choice(raw.get("modelPack", DEFAULT_PACK), "modelPack", tuple(sorted(PACKS)))
    backend = _choice(raw.get("vectorBackend", "pgvector"), "vectorBackend", VECTOR_BACKENDS)
    policy = _choice(raw.get("deletionPolicy", "Retain"), "deletionPolicy", DELETION_POLICIES)
    description = raw.get("description", "")
    if not isinstance(description, str) or len(description) > 1024:
        raise InvalidParameter("spec.description must be a string of at most 1024 characters")
    pinecone = raw.get("pinecone")
    if pinecone is not None and backend != "pinecone":
        raise InvalidParameter("spec.pinecone is only allowed with vectorBackend: pinecone")
    if backend == "pinecone":
        pinecone = _pinecone(pinecone)
    return FaceCollectionSpec(model_pack, backend, pinecone, policy, description)


def applied_of(collection: CollectionRecord) -> dict[str, Any]:
    """What an existing collection was created with, in the spec's terms."""
    pack = collection.model_version.split(":", 1)[0]
    applied: dict[str, Any] = {"modelPack": pack, "vectorBackend": collection.vector_backend}
    if collection.vector_backend == "pinecone":
        options = collection.vector_options
        applied["pinecone"] = {k: options[k] for k in ("cloud", "region") if k in options}
    return applied


def immutable_changes(spec: FaceCollectionSpec, collection: CollectionRecord) -> list[str]:
    """How the spec's immutable fields differ from what the collection was created with, as
    `spec.field: old -> new` lines ([] when they agree)."""
    have, want = applied_of(collection), spec.immutable()
    return [
        f"spec.{key}: {_show(have.get(key))} -> {_show(want.get(key))}"
        for key in sorted(set(have) | set(want))
        if have.get(key) != want.get(key)
    ]


def _choice(value: Any, key: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise InvalidParameter(f"spec.{key} must be one of {', '.join(allowed)}; got {value!r}")
    return value


def _pinecone(raw: Any) -> dict[str, str]:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise InvalidParameter("spec.pinecone must be an object")
    unknown = sorted(set(raw) - {"cloud", "region"})
    if unknown:
        raise InvalidParameter(f"unknown spec.pinecone field(s): {', '.join(unknown)}")
    cloud = _choice(raw.get("cloud", DEFAULT_PINECONE["cloud"]), "pinecone.cloud", CLOUDS)
    region = raw.get("region", DEFAULT_PINECONE["region"])
    try:  # the store's own check, so the operator never accepts what the store refuses
        check_location(cloud, region)
    except InvalidParameter as err:
        raise InvalidParameter(f"spec.pinecone.region: {err.message}") from None
    return {"cloud": cloud, "region": region}


def _show(value: Any) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in sorted(value.items()))
    return str(value)
