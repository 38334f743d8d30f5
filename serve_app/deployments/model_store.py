"""A named, detached actor that reads each model file once into Ray's object store.

`ray.put` in the app builder does not survive `serve run config.yaml` (the builder's worker
owns the object and exits), so an actor that outlives the build owns the bytes; replicas
ask it for the reference and build their sessions from that one shared copy.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import ray

MODEL_STORE_NAME = "faceserve-model-store"
NAMESPACE = "faceserve"


@ray.remote(num_cpus=0)
class ModelStore:
    def __init__(self) -> None:
        self._refs: dict[str, ray.ObjectRef] = {}

    def put(self, key: str, path: str) -> list[ray.ObjectRef]:
        """Load `path` once under `key`; returns `[ref]` (a list, so Ray doesn't resolve it)."""
        if key not in self._refs:
            data = np.frombuffer(Path(path).read_bytes(), dtype=np.uint8)
            self._refs[key] = ray.put(data)
        return [self._refs[key]]

    def get(self, key: str) -> list[ray.ObjectRef]:
        return [self._refs[key]]


def model_store() -> ray.actor.ActorHandle:
    """The (one) model store of this Ray cluster, created on first use."""
    return ModelStore.options(
        name=MODEL_STORE_NAME, namespace=NAMESPACE, lifetime="detached", get_if_exists=True
    ).remote()


def shared_model_bytes(key: str) -> bytes:
    """The bytes of a model put in the store under `key` (read from shared memory)."""
    (ref,) = ray.get(model_store().get.remote(key))
    return ray.get(ref).tobytes()


def shutdown_model_store() -> None:
    """Kill the store, so a later start does not reuse stale bytes."""
    with contextlib.suppress(ValueError):
        ray.kill(ray.get_actor(MODEL_STORE_NAME, namespace=NAMESPACE))
