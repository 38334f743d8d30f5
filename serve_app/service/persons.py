"""Persons: faces of one individual grouped under an id the client chose (Rekognition's
users). Create, associate and disassociate faces, merge, delete, and search persons by image,
by face or by person.

Rekognition's rules: at most 100 face ids a call and 100 faces a person; a face joins a person
that has faces only if it resembles one of them (UserMatchThreshold); searches default to
10 results (at most 500); default thresholds in `thresholds.py`. A person's similarity is the
best of its faces'. No Ray, no HTTP: plain async Python over the shared `CollectionContext`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from serve_app.errors import InvalidParameter, NotFound
from serve_app.service import params, thresholds
from serve_app.service.context import CollectionContext, min_cosine, similarity
from serve_app.service.params import MAX_FACE_IDS, MAX_PERSON_FACES, MAX_PERSON_RESULTS
from serve_app.service.ports import Pipeline
from serve_app.store.records import (
    CollectionRecord,
    FaceRecord,
    PersonFacesChange,
    PersonRecord,
)
from serve_app.vision.types import DetectedFace

__all__ = ["MAX_FACE_IDS", "MAX_PERSON_FACES", "MAX_PERSON_RESULTS", "PersonService"]


@dataclass(frozen=True)
class FaceAssociation:
    """A face that could not be associated (or disassociated), and why."""

    face_id: str
    reasons: list[str]  # FACE_NOT_FOUND, ASSOCIATED_TO_A_DIFFERENT_USER, LOW_MATCH_CONFIDENCE
    similarity: float | None = None  # LOW_MATCH_CONFIDENCE: best similarity to the person's faces
    person_id: str | None = None  # ASSOCIATED_TO_A_DIFFERENT_USER: whom it belongs to


@dataclass(frozen=True)
class AssociationResult:
    associated: list[str]  # face ids that belong (or, disassociating, no longer belong) to it
    unsuccessful: list[FaceAssociation]
    person: PersonRecord  # after the change


@dataclass(frozen=True)
class PersonMatch:
    similarity: float  # 0-100: the best of the person's faces
    person: PersonRecord


@dataclass(frozen=True)
class PersonSearchResult:
    collection: CollectionRecord
    searched_face: DetectedFace | FaceRecord | None  # by image, by face, by person
    matches: list[PersonMatch]  # best first
    unsearched: list[DetectedFace]  # by image: the image's other (smaller) faces


class PersonService:
    """Persons of the collections of one `CollectionContext`."""

    def __init__(self, context: CollectionContext) -> None:
        self.context = context
        self._storage = context.storage

    # Persons -----------------------------------------------------------------------------

    async def create_person(
        self,
        collection: str,
        person_id: str,
        metadata: dict | None = None,
        request_token: str | None = None,
    ) -> PersonRecord:
        """A new person without faces; AlreadyExists if `person_id` is taken (a retry with the
        same `request_token` gets the first reply instead)."""
        return await self._storage.create_person(
            collection, person_id, params.metadata(metadata), request_token
        )

    async def get_person(self, collection: str, person_id: str) -> PersonRecord:
        return await self._storage.get_person(collection, person_id)

    async def list_persons(
        self, collection: str, limit: int = 100, cursor: str | None = None
    ) -> tuple[list[PersonRecord], str | None]:
        """A page of persons by id, and the cursor of the next page (None at the end)."""
        limit = params.count("limit", limit, params.MAX_PAGE)
        return await self._storage.list_persons(collection, limit, cursor)

    async def delete_person(
        self,
        collection: str,
        person_id: str,
        delete_faces: bool = False,
        request_token: str | None = None,
    ) -> None:
        """Delete a person; its faces stay, belonging to nobody, unless `delete_faces`."""
        await self._storage.delete_person(collection, person_id, delete_faces, request_token)

    async def merge_persons(self, collection: str, into: str, other: str) -> PersonRecord:
        """Move `other`'s faces to `into` and delete `other` (one transaction). `into` keeps
        its metadata, plus the keys of `other`'s it lacks."""
        return await self._storage.merge_persons(collection, into, other, MAX_PERSON_FACES)

    # Faces of a person -------------------------------------------------------------------

    async def associate_faces(
        self,
        collection: str,
        person_id: str,
        face_ids: list[str],
        threshold: float | None = None,
        request_token: str | None = None,
    ) -> AssociationResult:
        """Make indexed faces the person's. Once the person has faces, a new one must reach
        `threshold` (default 75) with at least one of them; a face of another person, or an
        unknown one, is refused; one already the person's counts as associated."""
        ids = params.face_ids(face_ids)
        threshold = params.threshold(threshold, thresholds.ASSOCIATION)
        _, pipeline = await self.context.collection(collection)
        change = await self._storage.associate_faces(
            collection,
            person_id,
            ids,
            min_cosine(pipeline, threshold),
            MAX_PERSON_FACES,
            request_token,
        )
        return _association(change, pipeline)

    async def disassociate_faces(
        self,
        collection: str,
        person_id: str,
        face_ids: list[str],
        request_token: str | None = None,
    ) -> AssociationResult:
        """Make the person's faces belong to nobody; a face of another person, or an unknown
        one, is refused; one that belongs to nobody counts as disassociated."""
        ids = params.face_ids(face_ids)
        change = await self._storage.disassociate_faces(collection, person_id, ids, request_token)
        return _association(change, None)

    # Search ------------------------------------------------------------------------------

    async def search_persons_by_image(
        self,
        collection: str,
        image: bytes,
        threshold: float | None = None,
        max_results: int | None = None,
    ) -> PersonSearchResult:
        """The persons the image's largest face resembles, best first."""
        threshold, k = _search_params(threshold, max_results)
        record, pipeline = await self.context.collection(collection)
        found = await pipeline.detect(image)
        if not found.faces:
            raise InvalidParameter("no face detected in the image")
        face = found.faces[0]
        vector = (await pipeline.embed(face.chip[None]))[0]
        matches = await self._matches(record, pipeline, vector, threshold, k)
        return PersonSearchResult(record, face, matches, list(found.faces[1:]))

    async def search_persons_by_face(
        self,
        collection: str,
        face_id: str,
        threshold: float | None = None,
        max_results: int | None = None,
    ) -> PersonSearchResult:
        """The persons an indexed face resembles, best first. The face itself is left out of
        the comparison: its own person is found through its other faces."""
        threshold, k = _search_params(threshold, max_results)
        record, pipeline = await self.context.collection(collection)
        faces = await self._storage.get_faces(collection, [face_id])
        if not faces:
            raise NotFound(f"face {face_id} not found in collection {collection!r}")
        vector = await self._storage.get_embedding(collection, face_id)
        matches = await self._matches(
            record, pipeline, vector, threshold, k, exclude_face=faces[0].face_id
        )
        return PersonSearchResult(record, faces[0], matches, [])

    async def search_persons_by_person(
        self,
        collection: str,
        person_id: str,
        threshold: float | None = None,
        max_results: int | None = None,
    ) -> PersonSearchResult:
        """Other persons who resemble this one (any of its faces), best first: candidates
        for a merge."""
        threshold, k = _search_params(threshold, max_results)
        record, pipeline = await self.context.collection(collection)
        vectors = await self._storage.person_embeddings(collection, person_id)
        matches: list[PersonMatch] = []
        if len(vectors):
            matches = await self._matches(
                record, pipeline, vectors, threshold, k, exclude_person=person_id
            )
        return PersonSearchResult(record, None, matches, [])

    # Internals ---------------------------------------------------------------------------

    async def _matches(
        self,
        collection: CollectionRecord,
        pipeline: Pipeline,
        vectors: np.ndarray,
        threshold: float,
        k: int,
        exclude_person: str | None = None,
        exclude_face: str | None = None,
    ) -> list[PersonMatch]:
        hits = await self._storage.search_persons(
            collection.name,
            vectors,
            k,
            min_cosine(pipeline, threshold),
            exclude_person=exclude_person,
            exclude_face=exclude_face,
        )
        matches = [PersonMatch(similarity(pipeline, cosine), person) for person, cosine in hits]
        return [m for m in matches if m.similarity >= threshold][:k]


def _search_params(threshold: float | None, max_results: int | None) -> tuple[float, int]:
    return params.search(threshold, max_results, thresholds.PERSON_SEARCH, MAX_PERSON_RESULTS)


def _association(change: PersonFacesChange, pipeline: Pipeline | None) -> AssociationResult:
    unsuccessful = [
        FaceAssociation(
            refused.face_id,
            [str(refused.reason)],
            similarity=(
                None
                if refused.cosine is None or pipeline is None
                else similarity(pipeline, refused.cosine)
            ),
            person_id=refused.person_id,
        )
        for refused in change.refused
    ]
    return AssociationResult(list(change.changed), unsuccessful, change.person)
