"""What the store hands in and out: plain frozen values, no ORM objects."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import numpy as np


@dataclass(frozen=True)
class CollectionRecord:
    """A collection: its own schema of faces, pinned to one model and embedding size."""

    id: str
    name: str
    schema_name: str
    model_version: str
    embedding_dim: int
    vector_backend: str
    metadata: dict[str, Any]
    created_at: datetime
    face_count: int | None  # None where the caller did not ask for it (internal lookups)
    person_count: int | None = None  # likewise
    # Where the backend keeps the vectors, resolved at creation and pinned (e.g. Pinecone's
    # cloud, region and index name); {} for pgvector.
    vector_options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NewImage:
    """The image a batch of faces was found in."""

    external_image_id: str | None
    width: int
    height: int
    data: bytes | None = None  # the photo itself: stored only when the service is asked to
    content_hash: str | None = None  # SHA-256 hex of the file (album jobs skip known ones)


@dataclass(frozen=True)
class NewFace:
    """A detected face to index: where it is, how good it is, and its embedding."""

    bounding_box: dict[str, Any]
    landmarks: list[Any]
    confidence: float
    quality: dict[str, Any]
    embedding: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FaceRecord:
    """An indexed face (its embedding is fetched separately: it is rarely needed)."""

    face_id: str
    image_id: str
    external_image_id: str | None
    bounding_box: dict[str, Any]
    landmarks: list[Any]
    confidence: float
    quality: dict[str, Any]
    metadata: dict[str, Any]
    person_id: str | None  # the client's id of the person the face belongs to
    created_at: datetime
    # The size of the image the face was found in: its box and landmarks are in its pixels.
    image_width: int | None = None
    image_height: int | None = None
    confirmed: bool = False  # put in its person by a user: clustering never moves it


@dataclass(frozen=True)
class PersonRecord:
    """A person: faces of one individual grouped under an id the client chose."""

    person_id: str  # the client's id (unique in the collection); the row's uuid stays inside
    metadata: dict[str, Any]
    face_count: int
    created_at: datetime
    name: str | None = None  # a display name (persons found by clustering start without)
    generated: bool = False  # made by clustering, with a generated `p-...` id

    def to_json(self) -> dict[str, Any]:
        return {
            "person_id": self.person_id,
            "metadata": self.metadata,
            "face_count": self.face_count,
            "created_at": self.created_at.isoformat(),
            "name": self.name,
            "generated": self.generated,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PersonRecord:
        return cls(
            data["person_id"],
            dict(data["metadata"]),
            int(data["face_count"]),
            datetime.fromisoformat(data["created_at"]),
            data.get("name"),
            bool(data.get("generated", False)),
        )


class FaceRefusal(StrEnum):
    """Why a face was not associated with, or disassociated from, a person (Rekognition's)."""

    FACE_NOT_FOUND = "FACE_NOT_FOUND"
    ASSOCIATED_TO_A_DIFFERENT_USER = "ASSOCIATED_TO_A_DIFFERENT_USER"
    LOW_MATCH_CONFIDENCE = "LOW_MATCH_CONFIDENCE"


@dataclass(frozen=True)
class RefusedFace:
    face_id: str
    reason: FaceRefusal
    cosine: float | None = None  # LOW_MATCH_CONFIDENCE: best cosine to the person's faces
    person_id: str | None = None  # ASSOCIATED_TO_A_DIFFERENT_USER: the person it belongs to


@dataclass(frozen=True)
class PersonFacesChange:
    """The outcome of associating faces with a person, or disassociating them."""

    person: PersonRecord  # after the change
    changed: list[str]  # the face ids asked for that now (no longer) belong to the person
    refused: list[RefusedFace]

    def to_json(self) -> dict[str, Any]:
        """As JSON, to be replayed for a retried request (see `request_tokens`)."""
        return {
            "person": self.person.to_json(),
            "changed": self.changed,
            "refused": [[r.face_id, str(r.reason), r.cosine, r.person_id] for r in self.refused],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PersonFacesChange:
        return cls(
            PersonRecord.from_json(data["person"]),
            list(data["changed"]),
            [
                RefusedFace(face_id, FaceRefusal(reason), cosine, person_id)
                for face_id, reason, cosine, person_id in data["refused"]
            ],
        )
