"""Collections of indexed faces: create, index, list, delete, search, compare.

Plain async Python over the shared `CollectionContext` (storage and a `Pipeline` per model
pack). No Ray, no HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from serve_app.errors import InvalidParameter, ModelNotAvailable, NotFound
from serve_app.service import params, thresholds
from serve_app.service.analysis import ImageFaces
from serve_app.service.context import CollectionContext, min_cosine, similarity
from serve_app.service.params import MAX_INDEX_FACES, MAX_SEARCH_RESULTS
from serve_app.service.ports import Pipeline
from serve_app.service.quality_filter import QualityFilter, Reason, quality_reasons, select_faces
from serve_app.store.records import CollectionRecord, FaceRecord, NewFace, NewImage
from serve_app.vision.packs.registry import pack_class
from serve_app.vision.types import DetectedFace

__all__ = ["MAX_INDEX_FACES", "MAX_SEARCH_RESULTS", "FaceService"]


@dataclass(frozen=True)
class UnindexedFace:
    face: DetectedFace
    reasons: list[Reason]


@dataclass(frozen=True)
class IndexResult:
    collection: CollectionRecord
    image_width: int
    image_height: int
    indexed: list[FaceRecord]
    unindexed: list[UnindexedFace]


@dataclass(frozen=True)
class FaceMatch:
    similarity: float
    face: FaceRecord


@dataclass(frozen=True)
class SearchResult:
    collection: CollectionRecord
    searched_face: DetectedFace | FaceRecord
    matches: list[FaceMatch]


@dataclass(frozen=True)
class CompareMatch:
    similarity: float
    face: DetectedFace


@dataclass(frozen=True)
class CompareResult:
    model_version: str
    source_face: DetectedFace
    matches: list[CompareMatch] = field(default_factory=list)
    unmatched: list[DetectedFace] = field(default_factory=list)


def new_face(face: DetectedFace, embedding: np.ndarray, metadata: dict) -> NewFace:
    """A detected face as the store indexes it."""
    return NewFace(
        bounding_box=face.box.to_dict(),
        landmarks=[[float(x), float(y)] for x, y in face.landmarks],
        confidence=float(face.confidence),
        quality=face.quality.to_dict(),
        embedding=embedding,
        metadata=metadata,
    )


def _require_quality(face: DetectedFace, quality_filter: str | None, role: str) -> None:
    if quality_filter is None:
        return
    reasons = quality_reasons(face, QualityFilter.parse(quality_filter))
    if reasons:
        raise InvalidParameter(
            f"the largest face in the {role} does not pass QualityFilter={quality_filter} "
            f"({', '.join(reasons)})"
        )


class FaceService:
    """Collections, faces, search and compare over one `CollectionContext`."""

    def __init__(self, context: CollectionContext) -> None:
        self.context = context
        self.storage = context.storage

    @property
    def default_pipeline(self) -> Pipeline:
        return self.context.default_pipeline

    # Collections -------------------------------------------------------------------------

    async def create_collection(
        self,
        name: str,
        model_pack: str | None = None,
        metadata: dict | None = None,
        vector_backend: str | None = None,
        vector_options: dict | None = None,
    ) -> CollectionRecord:
        """A new collection pinned to `model_pack`, its vectors in `vector_backend` (pgvector
        unless asked; `vector_options` configure it, e.g. Pinecone's cloud and region)."""
        if vector_backend is not None and not isinstance(vector_backend, str):
            raise InvalidParameter("vector_backend must be a string")
        if vector_options is not None and not isinstance(vector_options, dict):
            raise InvalidParameter("vector_options must be a JSON object")
        pipelines = self.context.pipelines
        pack = model_pack or self.context.default_pack
        cls = pack_class(pack)  # unknown names are a 400 listing the known packs
        if pack not in pipelines:
            raise ModelNotAvailable(
                f"model pack {pack} is not loaded by this service "
                f"(loaded: {', '.join(sorted(pipelines))})"
            )
        return await self.storage.create_collection(
            name,
            pipelines[pack].model_version,
            cls.embedding_dim,
            vector_backend or "pgvector",
            params.metadata(metadata),
            vector_options=vector_options,
        )

    async def list_collections(self) -> list[CollectionRecord]:
        return await self.storage.list_collections()

    async def describe_collection(self, name: str) -> CollectionRecord:
        return await self.storage.get_collection(name)

    async def delete_collection(self, name: str) -> None:
        await self.storage.delete_collection(name)

    # Faces -------------------------------------------------------------------------------

    async def index_faces(
        self,
        collection_name: str,
        image: bytes,
        external_image_id: str | None = None,
        max_faces: int | None = None,
        quality_filter: str | None = None,
        metadata: dict | None = None,
    ) -> IndexResult:
        """Detect, filter, embed and store the faces of one image (one transaction)."""
        external_image_id = params.external_id(external_image_id)
        if max_faces is not None:
            max_faces = params.count("max_faces", max_faces, MAX_INDEX_FACES)
        level = QualityFilter.parse(quality_filter)
        metadata = params.metadata(metadata)
        collection, pipeline = await self.context.collection(collection_name)
        found: ImageFaces = await pipeline.detect(image)
        keep, rejected = select_faces(found.faces, max_faces or MAX_INDEX_FACES, level)
        records: list[FaceRecord] = []
        if keep:
            chosen = [found.faces[i] for i in keep]
            vectors = await pipeline.embed(np.stack([f.chip for f in chosen]))
            new_faces = [new_face(f, vectors[n], metadata) for n, f in enumerate(chosen)]
            cipher = self.context.photo_cipher
            photo = cipher.seal(image) if self.context.store_images and cipher else None
            records = await self.storage.add_faces(
                collection_name,
                NewImage(external_image_id, found.width, found.height, photo),
                new_faces,
            )
        unindexed = [UnindexedFace(found.faces[i], reasons) for i, reasons in rejected.items()]
        return IndexResult(collection, found.width, found.height, records, unindexed)

    async def list_faces(
        self, collection_name: str, limit: int = params.DEFAULT_PAGE, cursor: str | None = None
    ) -> tuple[list[FaceRecord], str | None]:
        limit = params.count("limit", limit, params.MAX_PAGE)
        return await self.storage.list_faces(collection_name, limit, cursor)

    async def delete_faces(self, collection_name: str, face_ids: list[str]) -> list[str]:
        if not face_ids:
            raise InvalidParameter("face_ids must name at least one face")
        return await self.storage.delete_faces(collection_name, list(face_ids))

    # Search ------------------------------------------------------------------------------

    async def _matches(
        self,
        collection: CollectionRecord,
        pipeline: Pipeline,
        vector: np.ndarray,
        threshold: float,
        k: int,
        exclude: str | None = None,
    ) -> list[FaceMatch]:
        # One more for the excluded face itself, within the store's limit (MaxFaces=4096).
        fetch = min(k + (1 if exclude else 0), MAX_SEARCH_RESULTS)
        bound = min_cosine(pipeline, threshold)
        hits = await self.storage.search(collection.name, vector, fetch, bound)
        matches = [
            FaceMatch(similarity(pipeline, cosine), face)
            for face, cosine in hits
            if face.face_id != exclude
        ]
        return [m for m in matches if m.similarity >= threshold][:k]

    async def search_by_image(
        self,
        collection_name: str,
        image: bytes,
        threshold: float | None = None,
        max_results: int | None = None,
        quality_filter: str | None = None,
    ) -> SearchResult:
        """The image's largest face against the collection, best match first. With
        `quality_filter`, a largest face below that bar is an error, not searched."""
        threshold, k = params.search(threshold, max_results, thresholds.SEARCH, MAX_SEARCH_RESULTS)
        collection, pipeline = await self.context.collection(collection_name)
        # Only the largest face is searched: the pack may find it in a cheap low-resolution
        # pass (its landmarks and chip still come from the full image).
        found = await pipeline.detect(image, largest_only=True)
        if not found.faces:
            raise InvalidParameter("no face detected in the image")
        face = found.faces[0]
        _require_quality(face, quality_filter, "image")
        vector = (await pipeline.embed(face.chip[None]))[0]
        matches = await self._matches(collection, pipeline, vector, threshold, k)
        return SearchResult(collection, face, matches)

    async def search_by_face_id(
        self,
        collection_name: str,
        face_id: str,
        threshold: float | None = None,
        max_results: int | None = None,
    ) -> SearchResult:
        """An indexed face against the rest of its collection (itself excluded)."""
        threshold, k = params.search(threshold, max_results, thresholds.SEARCH, MAX_SEARCH_RESULTS)
        collection, pipeline = await self.context.collection(collection_name)
        faces = await self.storage.get_faces(collection_name, [face_id])
        if not faces:
            raise NotFound(f"face {face_id} not found in collection {collection_name!r}")
        face = faces[0]
        vector = await self.storage.get_embedding(collection_name, face_id)
        matches = await self._matches(collection, pipeline, vector, threshold, k, exclude=face_id)
        return SearchResult(collection, face, matches)

    # Stateless ---------------------------------------------------------------------------

    async def detect(self, image: bytes) -> ImageFaces:
        return await self.default_pipeline.detect(image)

    async def compare(
        self,
        source: bytes,
        target: bytes,
        threshold: float | None = None,
        quality_filter: str | None = None,
    ) -> CompareResult:
        """The source's largest face against every face in the target. With
        `quality_filter`, faces below that bar are not compared (a source face: an error)."""
        threshold = params.threshold(threshold, thresholds.COMPARE)
        pipeline = self.default_pipeline
        source_faces = (await pipeline.detect(source)).faces
        if not source_faces:
            raise InvalidParameter("no face detected in the source image")
        _require_quality(source_faces[0], quality_filter, "source image")
        target_faces = (await pipeline.detect(target)).faces
        if quality_filter is not None:
            level = QualityFilter.parse(quality_filter)
            target_faces = [f for f in target_faces if not quality_reasons(f, level)]
        result = CompareResult(pipeline.model_version, source_faces[0])
        if not target_faces:
            return result
        chips = np.stack([source_faces[0].chip] + [f.chip for f in target_faces])
        vectors = await pipeline.embed(chips)
        cosines = vectors[1:] @ vectors[0]
        for face, cosine in zip(target_faces, cosines, strict=True):
            score = similarity(pipeline, cosine)
            if score >= threshold:
                result.matches.append(CompareMatch(score, face))
            else:
                result.unmatched.append(face)
        result.matches.sort(key=lambda m: m.similarity, reverse=True)
        return result
