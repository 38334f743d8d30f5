"""The `ModelPack` interface: detector + aligner + embedder + calibration, versioned."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from serve_app.config import Settings
from serve_app.vision.calibration import Calibration, load_calibration
from serve_app.vision.types import BoundingBox, DetectedFace


@dataclass(frozen=True)
class PackInfo:
    """What `faceserve models list` shows about a pack."""

    name: str
    version: str
    embedding_dim: int
    prepared: bool
    offline: bool
    license: str


class ModelPack(ABC):
    """A versioned face pipeline. Collections pin `model_version`; packs never mix.

    Subclasses set the class attributes and implement `detect` and `embed_chips`.
    """

    name: ClassVar[str]
    version: ClassVar[str]
    embedding_dim: ClassVar[int]
    # Names of the 5 landmarks `detect` returns, in order.
    landmark_names: ClassVar[tuple[str, ...]]
    license: ClassVar[str]
    # True when the weights ship inside PyPI packages (no download ever needed).
    offline: ClassVar[bool] = False

    def __init__(
        self,
        settings: Settings,
        calibration: Calibration | None = None,
        embedding_model: bytes | None = None,
    ) -> None:
        """`embedding_model`: the bytes of `embedding_model_path`, when the caller shares one
        copy between processes (Ray's object store); otherwise the pack reads its files."""
        self.settings = settings
        self.calibration = calibration or load_calibration(self.name)
        self.embedding_model = embedding_model

    @classmethod
    def embedding_model_path(cls, model_dir: Path) -> Path | None:
        """The one file worth sharing between replicas, if the pack can load it from bytes."""
        return None

    @property
    def model_version(self) -> str:
        """The string a collection pins, e.g. `dlib-r29:1`."""
        return f"{self.name}:{self.version}"

    @classmethod
    def pack_dir(cls, model_dir: Path) -> Path:
        return Path(model_dir) / cls.name

    @classmethod
    @abstractmethod
    def is_prepared(cls, model_dir: Path) -> bool:
        """Whether every file the pack needs is in `model_dir`."""

    @classmethod
    @abstractmethod
    def prepare(cls, model_dir: Path) -> Path:
        """Convert or verify the pack's files once; raise ModelNotAvailable if impossible."""

    @classmethod
    def info(cls, model_dir: Path) -> PackInfo:
        return PackInfo(
            cls.name,
            cls.version,
            cls.embedding_dim,
            cls.is_prepared(model_dir),
            cls.offline,
            cls.license,
        )

    @abstractmethod
    def detect(
        self, image: np.ndarray, *, detector: str | None = None, largest_only: bool = False
    ) -> list[DetectedFace]:
        """Faces in an RGB uint8 image, largest first, each with its aligned chip.

        `detector` picks one of the pack's detectors (packs with one accept only None);
        `largest_only` says only the largest face is wanted, so a pack may detect cheaper.
        """

    def locate(self, image: np.ndarray, box: BoundingBox) -> DetectedFace:
        """Landmarks, quality and chip for a face at a known box (no detection).

        Used when a caller knows where the face is (e.g. aligned benchmark crops) and the
        detector missed it. Packs whose landmarks come from the detector do not support it.
        """
        raise NotImplementedError(f"pack {self.name} cannot align a face from a given box")

    @abstractmethod
    def embed_chips(self, chips: np.ndarray) -> np.ndarray:
        """(N, D) float32 L2-normalised embeddings for (N, H, W, 3) uint8 aligned chips."""

    def embed(self, faces: list[DetectedFace]) -> np.ndarray:
        if not faces:
            return np.zeros((0, self.embedding_dim), dtype=np.float32)
        return self.embed_chips(np.stack([f.chip for f in faces]))

    def similarity(self, a: np.ndarray, b: np.ndarray) -> float:
        """0-100 calibrated similarity of two embeddings."""
        return float(self.calibration.similarity(float(np.dot(a, b))))
