"""The JSON shapes of the REST API, from the service layer's records and results."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from serve_app.service.faces import (
    CompareResult,
    IndexResult,
    SearchResult,
)
from serve_app.service.persons import AssociationResult, PersonSearchResult
from serve_app.store.records import CollectionRecord, FaceRecord, PersonRecord
from serve_app.vision.types import DetectedFace


def _timestamp(value: Any) -> str | None:
    if value is None:
        return None
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _similarity(value: float) -> float:
    return round(float(value), 3)


def collection_json(collection: CollectionRecord) -> dict[str, Any]:
    return {
        "name": collection.name,
        "model_version": collection.model_version,
        "embedding_dim": collection.embedding_dim,
        "vector_backend": collection.vector_backend,
        "metadata": collection.metadata,
        "created_at": _timestamp(collection.created_at),
        "face_count": collection.face_count,
        "person_count": collection.person_count,
    }


def face_json(face: FaceRecord) -> dict[str, Any]:
    """An indexed face (never its embedding)."""
    return {
        "face_id": face.face_id,
        "image_id": face.image_id,
        "external_image_id": face.external_image_id,
        "bounding_box": face.bounding_box,
        "landmarks": face.landmarks,
        "confidence": round(float(face.confidence), 3),
        "quality": face.quality,
        "metadata": face.metadata,
        "person_id": face.person_id,
        "created_at": _timestamp(face.created_at),
    }


def any_face_json(face: DetectedFace | FaceRecord) -> dict[str, Any]:
    return face.to_dict() if isinstance(face, DetectedFace) else face_json(face)


def index_json(result: IndexResult) -> dict[str, Any]:
    return {
        "model_version": result.collection.model_version,
        "image": {"width": result.image_width, "height": result.image_height},
        "indexed": [face_json(face) for face in result.indexed],
        "unindexed": [
            {"face": item.face.to_dict(), "reasons": [str(reason) for reason in item.reasons]}
            for item in result.unindexed
        ],
    }


def search_json(result: SearchResult) -> dict[str, Any]:
    return {
        "model_version": result.collection.model_version,
        "searched_face": any_face_json(result.searched_face),
        "matches": [
            {"similarity": _similarity(match.similarity), "face": face_json(match.face)}
            for match in result.matches
        ],
    }


def compare_json(result: CompareResult) -> dict[str, Any]:
    return {
        "model_version": result.model_version,
        "source_face": result.source_face.to_dict(),
        "matches": [
            {"similarity": _similarity(match.similarity), "face": match.face.to_dict()}
            for match in result.matches
        ],
        "unmatched": [face.to_dict() for face in result.unmatched],
    }


def person_json(person: PersonRecord) -> dict[str, Any]:
    return {
        "person_id": person.person_id,
        "metadata": person.metadata,
        "face_count": person.face_count,
        "created_at": _timestamp(person.created_at),
    }


def association_json(result: AssociationResult) -> dict[str, Any]:
    return {
        "associated": result.associated,
        "unsuccessful": [
            {
                "face_id": item.face_id,
                "reasons": item.reasons,
                "similarity": None if item.similarity is None else _similarity(item.similarity),
                "person_id": item.person_id,
            }
            for item in result.unsuccessful
        ],
        "person": person_json(result.person),
    }


def person_search_json(result: PersonSearchResult) -> dict[str, Any]:
    searched = result.searched_face
    return {
        "model_version": result.collection.model_version,
        "searched_face": None if searched is None else any_face_json(searched),
        "matches": [
            {"similarity": _similarity(match.similarity), "person": person_json(match.person)}
            for match in result.matches
        ],
        "unsearched": [face.to_dict() for face in result.unsearched],
    }
