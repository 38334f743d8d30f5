"""What the service layer needs from the outside, as async ports.

The same service code runs in one process (tests, CLI: `LocalPipeline`, `LocalStorage`) and
in the Ray Serve graph, where the ports are deployment handles. Everything that crosses a
port is plain data (dataclasses, numpy arrays), so it pickles.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import numpy as np

from serve_app.config import ImageLimits
from serve_app.service.analysis import ImageFaces, detect_faces
from serve_app.store.database import outages_as_unavailable
from serve_app.vision.calibration import Calibration
from serve_app.vision.packs.base import ModelPack


class Pipeline(Protocol):
    """Detection and embedding for one model pack."""

    model_version: str
    calibration: Calibration

    async def detect(self, data: bytes) -> ImageFaces: ...

    async def embed(self, chips: np.ndarray) -> np.ndarray: ...


class LocalPipeline:
    """A pack in this process; the blocking work runs in a thread."""

    def __init__(self, pack: ModelPack, limits: ImageLimits | None = None) -> None:
        self.pack = pack
        self.limits = limits
        self.model_version = pack.model_version
        self.calibration = pack.calibration

    async def detect(self, data: bytes) -> ImageFaces:
        return await asyncio.to_thread(detect_faces, self.pack, data, self.limits)

    async def embed(self, chips: np.ndarray) -> np.ndarray:
        return await asyncio.to_thread(self.pack.embed_chips, chips)


class LocalStorage:
    """Any synchronous store object, with every method awaited in a worker thread (and a
    database that does not answer reported as DatabaseUnavailable)."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._store, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(outages_as_unavailable, method, *args, **kwargs)

        return call
