"""The service layer's ports over deployment handles (see serve_app/service/ports.py)."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

import numpy as np
from ray.exceptions import RayTaskError
from ray.serve.handle import DeploymentHandle

from serve_app.errors import FaceserveError
from serve_app.service.analysis import ImageFaces
from serve_app.service.ports import STORAGE_METHODS
from serve_app.vision.calibration import Calibration

T = TypeVar("T")


async def unwrap(call: Awaitable[T]) -> T:
    """Await a handle call, re-raising our own errors as themselves (not Ray's wrapper)."""
    try:
        return await call
    except RayTaskError as exc:
        if isinstance(exc.cause, FaceserveError):
            raise exc.cause from None
        raise


class RemotePipeline:
    def __init__(
        self,
        detector: DeploymentHandle,
        embedder: DeploymentHandle,
        model_version: str,
        calibration: Calibration,
    ) -> None:
        self._detector = detector
        self._embedder = embedder
        self.model_version = model_version
        self.calibration = calibration

    async def detect(self, data: bytes, *, largest_only: bool = False) -> ImageFaces:
        return await unwrap(self._detector.detect.remote(data, largest_only=largest_only))

    async def embed(self, chips: np.ndarray) -> np.ndarray:
        return await unwrap(self._embedder.embed.remote(chips))


class RemoteStorage:
    """A port over a deployment that runs its methods by name (`call`): the `Storage` port
    over the Search deployment unless `methods` says another (the Jobs deployment's)."""

    def __init__(self, search: DeploymentHandle, methods: frozenset[str] = STORAGE_METHODS) -> None:
        self._search = search
        self._methods = methods

    def __getattr__(self, method: str) -> Any:
        if method not in self._methods:
            raise AttributeError(f"{method!r} is not a method of this port")

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await unwrap(self._search.call.remote(method, *args, **kwargs))

        return call
