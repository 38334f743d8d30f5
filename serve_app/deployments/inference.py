"""The Detector and Embedder deployments: one model pack each, nothing else."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

import numpy as np
from ray import serve

from serve_app.config import Settings
from serve_app.deployments.model_store import shared_model_bytes
from serve_app.service.analysis import ImageFaces, detect_faces
from serve_app.vision.packs.base import ModelPack
from serve_app.vision.packs.registry import pack_class


def load_shared_pack(settings: Settings, pack_name: str, model_key: str | None) -> ModelPack:
    cls = pack_class(pack_name)
    shared = shared_model_bytes(model_key) if model_key else None
    return cls(settings, embedding_model=shared)


@serve.deployment(name="Detector", ray_actor_options={"num_cpus": 0.5})
class Detector:
    """Decode (with limits) and detect: image bytes in, faces with aligned chips out."""

    def __init__(self, settings: Settings, pack_name: str) -> None:
        self.settings = settings
        self.pack = load_shared_pack(settings, pack_name, None)

    async def detect(self, data: bytes, largest_only: bool = False) -> ImageFaces:
        # In a thread: the replica's event loop keeps accepting (and health-checking).
        return await asyncio.to_thread(
            partial(detect_faces, largest_only=largest_only),
            self.pack,
            data,
            self.settings.image_limits,
        )


@serve.deployment(name="Embedder", ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=64)
class Embedder:
    """Aligned chips in, L2-normalised embeddings out; requests are batched together."""

    def __init__(self, settings: Settings, pack_name: str, model_key: str | None) -> None:
        self.pack = load_shared_pack(settings, pack_name, model_key)

    def reconfigure(self, config: dict[str, Any]) -> None:
        """`user_config` from serve_config.yaml: batching knobs, changeable without restart."""
        if "max_batch_size" in config:
            self._embed_batch.set_max_batch_size(int(config["max_batch_size"]))
        if "batch_wait_timeout_s" in config:
            self._embed_batch.set_batch_wait_timeout_s(float(config["batch_wait_timeout_s"]))

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def _embed_batch(self, requests: list[np.ndarray]) -> list[np.ndarray]:
        counts = [len(r) for r in requests]
        vectors = await asyncio.to_thread(self.pack.embed_chips, np.concatenate(requests))
        bounds = np.cumsum([0, *counts])
        return [vectors[bounds[i] : bounds[i + 1]] for i in range(len(requests))]

    async def embed(self, chips: np.ndarray) -> np.ndarray:
        if len(chips) == 0:
            return np.zeros((0, self.pack.embedding_dim), dtype=np.float32)
        return await self._embed_batch(chips)
