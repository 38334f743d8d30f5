"""What the service layer needs from the outside, as async ports.

The same service code runs in one process (tests, CLI: `LocalPipeline`, `LocalStorage`) and
in the Ray Serve graph, where the ports are deployment handles. Everything that crosses a
port is plain data (dataclasses, numpy arrays), so it pickles.

`Storage` is the one declaration of what the service asks of storage: the Search deployment
accepts exactly its methods (`STORAGE_METHODS`), and `LocalStorage` forwards exactly those.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any, Protocol

import numpy as np

from serve_app.config import ImageLimits
from serve_app.service.analysis import ImageFaces, detect_faces
from serve_app.service.people_ports import PeopleStoragePort
from serve_app.store.database import outages_as_unavailable
from serve_app.store.jobs import ImageFailure, JobRecord
from serve_app.store.records import (
    CollectionRecord,
    FaceRecord,
    NewFace,
    NewImage,
    PersonFacesChange,
    PersonRecord,
)
from serve_app.vision.calibration import Calibration
from serve_app.vision.packs.base import ModelPack


class Pipeline(Protocol):
    """Detection and embedding for one model pack."""

    model_version: str
    calibration: Calibration

    async def detect(self, data: bytes, *, largest_only: bool = False) -> ImageFaces:
        """Faces, largest first. `largest_only`: only the largest is wanted (a search
        query), so the pack may skip its full-resolution pass."""
        ...

    async def embed(self, chips: np.ndarray) -> np.ndarray: ...


class Storage(PeopleStoragePort, Protocol):
    """Collections, faces and persons (implemented by `serve_app.store.Store`, awaited)."""

    async def ping(self) -> bool: ...

    async def create_collection(
        self,
        name: str,
        model_version: str,
        embedding_dim: int,
        vector_backend: str = "pgvector",
        metadata: dict[str, Any] | None = None,
        vector_options: Mapping[str, Any] | None = None,
    ) -> CollectionRecord: ...

    async def get_collection(self, name: str, *, counted: bool = True) -> CollectionRecord: ...

    async def list_collections(self) -> list[CollectionRecord]: ...

    async def delete_collection(self, name: str) -> None: ...

    async def count_faces(self, collection_name: str) -> int: ...

    async def add_faces(
        self, collection_name: str, image: NewImage, faces: Sequence[NewFace]
    ) -> list[FaceRecord]: ...

    async def list_faces(
        self, collection_name: str, limit: int = 100, cursor: str | None = None
    ) -> tuple[list[FaceRecord], str | None]: ...

    async def get_faces(
        self, collection_name: str, face_ids: Sequence[str]
    ) -> list[FaceRecord]: ...

    async def get_embedding(self, collection_name: str, face_id: str) -> np.ndarray: ...

    async def delete_faces(self, collection_name: str, face_ids: Sequence[str]) -> list[str]: ...

    async def search(
        self, collection_name: str, vector: np.ndarray, k: int, min_cosine: float
    ) -> list[tuple[FaceRecord, float]]: ...

    async def create_person(
        self,
        collection_name: str,
        person_id: str,
        metadata: dict[str, Any] | None = None,
        request_token: str | None = None,
    ) -> PersonRecord: ...

    async def get_person(self, collection_name: str, person_id: str) -> PersonRecord: ...

    async def list_persons(
        self, collection_name: str, limit: int = 100, cursor: str | None = None
    ) -> tuple[list[PersonRecord], str | None]: ...

    async def delete_person(
        self,
        collection_name: str,
        person_id: str,
        delete_faces: bool = False,
        request_token: str | None = None,
    ) -> list[str]: ...

    async def associate_faces(
        self,
        collection_name: str,
        person_id: str,
        face_ids: Sequence[str],
        min_cosine: float,
        max_faces: int,
        request_token: str | None = None,
    ) -> PersonFacesChange: ...

    async def disassociate_faces(
        self,
        collection_name: str,
        person_id: str,
        face_ids: Sequence[str],
        request_token: str | None = None,
    ) -> PersonFacesChange: ...

    async def merge_persons(
        self, collection_name: str, into: str, other: str, max_faces: int
    ) -> PersonRecord: ...

    async def search_persons(
        self,
        collection_name: str,
        vectors: np.ndarray,
        k: int,
        min_cosine: float,
        exclude_person: str | None = None,
        exclude_face: str | None = None,
    ) -> list[tuple[PersonRecord, float]]: ...

    async def person_embeddings(self, collection_name: str, person_id: str) -> np.ndarray: ...

    async def erase_person(self, collection_name: str, person_id: str) -> dict[str, int]: ...


class JobQueue(Protocol):
    """Album jobs' durable records (implemented by `serve_app.store.jobs.JobStore`, awaited)."""

    async def create_job(
        self, collection_name: str, source: str, source_kind: str, options: dict[str, Any]
    ) -> JobRecord: ...

    async def get_job(self, job_id: str) -> JobRecord: ...

    async def list_jobs(
        self,
        collection: str | None = None,
        state: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
        within: Sequence[str] | None = None,
    ) -> tuple[list[JobRecord], str | None]: ...

    async def failures(
        self, job_id: str, limit: int = 100, cursor: str | None = None
    ) -> tuple[list[ImageFailure], str | None]: ...

    async def set_state(
        self, job_id: str, state: str, *, allowed_from: Sequence[str]
    ) -> JobRecord: ...


def _protocol_methods(protocol: type) -> frozenset[str]:
    return frozenset(
        name
        for name, value in vars(protocol).items()
        if callable(value) and not name.startswith("_")
    )


# The storage port's methods: all that the Search deployment lets a caller run.
STORAGE_METHODS = _protocol_methods(Storage) | _protocol_methods(PeopleStoragePort)
JOB_QUEUE_METHODS = _protocol_methods(JobQueue)


class LocalPipeline:
    """A pack in this process; the blocking work runs in a thread."""

    def __init__(self, pack: ModelPack, limits: ImageLimits | None = None) -> None:
        self.pack = pack
        self.limits = limits
        self.model_version = pack.model_version
        self.calibration = pack.calibration

    async def detect(self, data: bytes, *, largest_only: bool = False) -> ImageFaces:
        return await asyncio.to_thread(
            partial(detect_faces, largest_only=largest_only), self.pack, data, self.limits
        )

    async def embed(self, chips: np.ndarray) -> np.ndarray:
        return await asyncio.to_thread(self.pack.embed_chips, chips)


class LocalStorage:
    """A synchronous store in this process: each method of the port (`Storage` unless
    `methods` says another) is awaited in a worker thread (and a database that does not
    answer is reported as DatabaseUnavailable)."""

    def __init__(self, store: Any, methods: frozenset[str] = STORAGE_METHODS) -> None:
        self._store = store
        self._methods = methods

    def __getattr__(self, name: str) -> Any:
        if name not in self._methods:
            raise AttributeError(f"{name!r} is not a method of this port")
        method = getattr(self._store, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(outages_as_unavailable, method, *args, **kwargs)

        return call
