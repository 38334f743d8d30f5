"""Batched embedding with onnxruntime: one session per model, weights from bytes or a path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort


def create_session(model: bytes | Path | str, threads: int = 0) -> ort.InferenceSession:
    """An onnxruntime session on the best available provider (CUDA if present, else CPU).

    `model` may be the file's bytes, so replicas can build sessions from one shared copy.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(0, threads)
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    available = ort.get_available_providers()
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=providers)


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


class OnnxEmbedder:
    """Runs an embedding model over aligned chips in batches.

    With `flip`, each chip's descriptor is summed with its mirror image's before
    normalising: the usual test-time augmentation, worth its second forward pass (see
    BENCHMARKS.md).
    """

    def __init__(
        self, model: bytes | Path | str, threads: int = 0, batch_size: int = 32, flip: bool = True
    ) -> None:
        self.session = create_session(model, threads)
        self.input_name = self.session.get_inputs()[0].name
        self.batch_size = max(1, batch_size)
        self.flip = flip

    def raw(self, chips: np.ndarray) -> np.ndarray:
        """Unnormalised model outputs, batch by batch."""
        outputs = [
            self.session.run(None, {self.input_name: chips[i : i + self.batch_size]})[0]
            for i in range(0, len(chips), self.batch_size)
        ]
        return np.concatenate(outputs, axis=0)

    def embed(self, chips: np.ndarray) -> np.ndarray:
        chips = np.ascontiguousarray(chips, dtype=np.uint8)
        if len(chips) == 0:
            return np.zeros((0, 0), dtype=np.float32)
        vectors = self.raw(chips)
        if self.flip:
            vectors = vectors + self.raw(np.ascontiguousarray(chips[:, :, ::-1]))
        return l2_normalise(vectors)
