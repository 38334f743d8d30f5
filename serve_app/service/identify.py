"""Enroll a person from one photo, identify every face of an image, recognize faces for
clients that keep their own index, and the identification history.

Identify answers for **every** face (group photos, video frames): each one searches the
persons and gets its best person and similarity, or `unknown`. With the collection's
`match_history` setting on, each answer is kept (person or unknown, similarity, box, source
label, time; never the image or the embedding) for the retention the setting gives.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from serve_app.errors import InvalidParameter
from serve_app.service import params, thresholds
from serve_app.service.context import CollectionContext, min_cosine, similarity
from serve_app.service.params import MAX_INDEX_FACES, MAX_PERSON_FACES
from serve_app.store.people_records import EnrollOutcome, Identification
from serve_app.store.records import CollectionRecord, NewFace, NewImage, PersonRecord
from serve_app.vision.types import DetectedFace

MAX_SOURCE = 255


@dataclass(frozen=True)
class IdentifiedFace:
    face: DetectedFace
    person: PersonRecord | None  # None: unknown
    similarity: float | None  # to the person's nearest face; None when unknown


@dataclass(frozen=True)
class IdentifyResult:
    collection: CollectionRecord
    image_width: int
    image_height: int
    faces: list[IdentifiedFace]  # largest first
    recorded: int  # history rows written (0 unless the collection keeps a history)


@dataclass(frozen=True)
class RecognizedFace:
    face: DetectedFace
    embedding: np.ndarray


@dataclass(frozen=True)
class RecognizeResult:
    model_version: str
    image_width: int
    image_height: int
    faces: list[RecognizedFace]


def new_face(face: DetectedFace, vector: np.ndarray, metadata: dict | None = None) -> NewFace:
    return NewFace(
        bounding_box=face.box.to_dict(),
        landmarks=[[float(x), float(y)] for x, y in face.landmarks],
        confidence=float(face.confidence),
        quality=face.quality.to_dict(),
        embedding=vector,
        metadata=metadata or {},
    )


class IdentifyService:
    """Enrolment, identification and history over one `CollectionContext`."""

    def __init__(self, context: CollectionContext) -> None:
        self.context = context
        self._storage = context.storage

    async def enroll(
        self,
        collection: str,
        image: bytes,
        person_id: str,
        name: str | None = None,
        metadata: dict | None = None,
        threshold: float | None = None,
        external_image_id: str | None = None,
    ) -> EnrollOutcome:
        """Index the image's largest face as `person_id`'s (created if needed), confirmed,
        in one transaction; refused (409 `face_matches_another_person`) when the face
        reaches `threshold` with another person."""
        threshold = params.threshold(threshold, thresholds.ENROLL_CONFLICT)
        external_image_id = params.external_id(external_image_id)
        _, pipeline = await self.context.collection(collection)
        found = await pipeline.detect(image, largest_only=True)
        if not found.faces:
            raise InvalidParameter("no face detected in the image")
        face = found.faces[0]
        vector = (await pipeline.embed(face.chip[None]))[0]
        photo = image if self.context.store_images else None
        return await self._storage.enroll(
            collection,
            person_id,
            NewImage(external_image_id, found.width, found.height, photo),
            new_face(face, vector),
            min_cosine(pipeline, threshold),
            MAX_PERSON_FACES,
            name,
            params.metadata(metadata) if metadata is not None else None,
        )

    async def identify(
        self,
        collection: str,
        image: bytes,
        threshold: float | None = None,
        max_faces: int | None = None,
        source: str | None = None,
        key_id: str | None = None,
    ) -> IdentifyResult:
        """Every face of the image (largest first, at most `max_faces`), each with its best
        person at or above `threshold`, or unknown; recorded in the history if kept."""
        threshold = params.threshold(threshold, thresholds.IDENTIFY)
        limit = params.count(
            "max_faces", MAX_INDEX_FACES if max_faces is None else max_faces, MAX_INDEX_FACES
        )
        if source is not None and (
            not isinstance(source, str) or not 1 <= len(source) <= MAX_SOURCE
        ):
            raise InvalidParameter(f"source must be 1 to {MAX_SOURCE} characters")
        record, pipeline = await self.context.collection(collection)
        found = await pipeline.detect(image)
        faces = list(found.faces[:limit])
        answers: list[IdentifiedFace] = []
        if faces:
            vectors = await pipeline.embed(np.stack([f.chip for f in faces]))
            bound = min_cosine(pipeline, threshold)
            best = await asyncio.gather(
                *(self._storage.search_persons(collection, v, 1, bound) for v in vectors)
            )
            for face, hits in zip(faces, best, strict=True):
                if hits:
                    person, cosine = hits[0]
                    answers.append(IdentifiedFace(face, person, similarity(pipeline, cosine)))
                else:
                    answers.append(IdentifiedFace(face, None, None))
        recorded = await self._storage.record_identifications(
            collection,
            [
                Identification(
                    person_id=a.person.person_id if a.person else None,
                    similarity=a.similarity,
                    bounding_box=a.face.box.to_dict(),
                    source=source,
                    key_id=key_id,
                )
                for a in answers
            ],
        )
        return IdentifyResult(record, found.width, found.height, answers, recorded)

    async def recognize(self, image: bytes, max_faces: int | None = None) -> RecognizeResult:
        """Every face of the image (largest first) with its embedding, by the default pack."""
        limit = params.count(
            "max_faces", MAX_INDEX_FACES if max_faces is None else max_faces, MAX_INDEX_FACES
        )
        pipeline = self.context.default_pipeline
        found = await pipeline.detect(image)
        faces = list(found.faces[:limit])
        vectors = (
            await pipeline.embed(np.stack([f.chip for f in faces])) if faces else np.zeros((0, 0))
        )
        return RecognizeResult(
            pipeline.model_version,
            found.width,
            found.height,
            [RecognizedFace(f, v) for f, v in zip(faces, vectors, strict=False)],
        )

    async def history(
        self,
        collection: str,
        person_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = params.DEFAULT_PAGE,
        cursor: str | None = None,
    ) -> tuple[list[Identification], str | None]:
        """Identifications, newest first, within the collection's retention."""
        limit = params.count("limit", limit, params.MAX_PAGE)
        if since is not None and until is not None and since >= until:
            raise InvalidParameter("since must be before until")
        return await self._storage.identification_history(
            collection, person_id, since, until, limit, cursor
        )
