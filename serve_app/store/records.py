"""What the store hands in and out: plain frozen values, no ORM objects."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
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


@dataclass(frozen=True)
class NewImage:
    """The image a batch of faces was found in."""

    external_image_id: str | None
    width: int
    height: int
    data: bytes | None = None  # the photo itself: stored only when the service is asked to


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
    person_id: str | None
    created_at: datetime
