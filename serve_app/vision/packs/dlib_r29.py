"""`dlib-r29`: the offline default pack.

dlib's HOG face detector and 5-point shape predictor (from `dlib-bin`), dlib's own face-chip
geometry (150x150, padding 0.25) and the 29-conv ResNet descriptor from the PyPI package
`face-recognition-models`, converted to ONNX by our converter and run in onnxruntime.
All weights are public domain.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import threading
from pathlib import Path

import dlib
import numpy as np
from PIL import Image

from serve_app.config import Settings
from serve_app.errors import ModelNotAvailable
from serve_app.vision.calibration import Calibration
from serve_app.vision.convert.dlib_resnet import convert_dlib_resnet
from serve_app.vision.packs.base import ModelPack
from serve_app.vision.packs.onnx_embedder import OnnxEmbedder
from serve_app.vision.quality import brightness, pose_from_eyes_nose, sharpness
from serve_app.vision.types import BoundingBox, DetectedFace, FaceQuality

RESNET_FILE = "dlib_face_recognition_resnet_model_v1.dat"
SHAPE_FILE = "shape_predictor_5_face_landmarks.dat"
ONNX_FILE = "dlib_face_recognition_resnet_v1.onnx"
MANIFEST_FILE = "manifest.json"
CHIP_SIZE = 150
CHIP_PADDING = 0.25


def shipped_model_path(filename: str) -> Path:
    """A weight file inside the installed `face-recognition-models` package.

    Located with find_spec rather than imported: importing it needs `pkg_resources`, which
    recent setuptools no longer provides.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise ModelNotAvailable("the Python package face-recognition-models is not installed")
    path = Path(spec.origin).parent / "models" / filename
    if not path.is_file():
        raise ModelNotAvailable(f"{path} is missing from face-recognition-models")
    return path


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def hog_confidence(score: float) -> float:
    """0-100 from the HOG SVM margin: 50 at the decision boundary, ~95 at a margin of 1."""
    return 100.0 / (1.0 + math.exp(-3.0 * score))


class DlibR29Pack(ModelPack):
    name = "dlib-r29"
    version = "1"
    embedding_dim = 128
    # Left/right as seen in the image (dlib's 5-point order).
    landmark_names = (
        "eye_right_outer",
        "eye_right_inner",
        "eye_left_outer",
        "eye_left_inner",
        "nose_base",
    )
    license = "public domain (dlib models by Davis King)"
    offline = True

    @classmethod
    def is_prepared(cls, model_dir: Path) -> bool:
        manifest = cls.pack_dir(model_dir) / MANIFEST_FILE
        if not manifest.is_file() or not (cls.pack_dir(model_dir) / ONNX_FILE).is_file():
            return False
        try:
            recorded = json.loads(manifest.read_text()).get("source_sha256")
            return recorded == _sha256(shipped_model_path(RESNET_FILE))
        except (ValueError, ModelNotAvailable):
            return False

    @classmethod
    def prepare(cls, model_dir: Path) -> Path:
        """Convert the shipped ResNet to ONNX once (skipped when already done for this file)."""
        target = cls.pack_dir(model_dir)
        if cls.is_prepared(model_dir):
            return target
        source = shipped_model_path(RESNET_FILE)
        convert_dlib_resnet(source, target / ONNX_FILE)
        manifest = {"source": source.name, "source_sha256": _sha256(source), "onnx": ONNX_FILE}
        (target / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
        return target

    @classmethod
    def onnx_path(cls, model_dir: Path) -> Path:
        if not cls.is_prepared(model_dir):
            raise ModelNotAvailable(
                f"model pack {cls.name} is not prepared in {model_dir}: "
                "run `faceserve models prepare` once"
            )
        return cls.pack_dir(model_dir) / ONNX_FILE

    @classmethod
    def embedding_model_path(cls, model_dir: Path) -> Path | None:
        return cls.onnx_path(model_dir)

    def __init__(
        self,
        settings: Settings,
        calibration: Calibration | None = None,
        embedding_model: bytes | None = None,
    ) -> None:
        super().__init__(settings, calibration, embedding_model)
        # dlib's detector and shape predictor keep scratch state: concurrent calls from
        # several threads (a replica serving requests in parallel) crash with SIGSEGV.
        self._dlib_lock = threading.Lock()
        self._detector = dlib.get_frontal_face_detector()
        self._shapes = dlib.shape_predictor(str(shipped_model_path(SHAPE_FILE)))
        self._model: bytes | Path = (
            embedding_model if embedding_model is not None else self.onnx_path(settings.model_dir)
        )
        # Built on first use: a detection-only replica never pays for an embedding session.
        self._embedder: OnnxEmbedder | None = None

    def _hog(self, image: np.ndarray) -> list[tuple[dlib.rectangle, float]]:
        """Run HOG on a copy no longer than detect_max_side; rectangles in original pixels."""
        height, width = image.shape[:2]
        scale = min(1.0, self.settings.detect_max_side / max(height, width))
        small = image
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            small = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
        upsample = 1 if max(small.shape[:2]) < self.settings.detect_upsample_below else 0
        rects, scores, _ = self._detector.run(small, upsample, 0.0)
        found = []
        for rect, score in zip(rects, scores, strict=True):
            if scale < 1.0:
                rect = dlib.rectangle(
                    round(rect.left() / scale),
                    round(rect.top() / scale),
                    round(rect.right() / scale),
                    round(rect.bottom() / scale),
                )
            found.append((rect, float(score)))
        return found

    def _face(self, image: np.ndarray, rect: dlib.rectangle, score: float | None) -> DetectedFace:
        shape = self._shapes(image, rect)
        points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
        chip = np.asarray(dlib.get_face_chip(image, shape, size=CHIP_SIZE, padding=CHIP_PADDING))
        box = BoundingBox(
            float(rect.left()), float(rect.top()), float(rect.width()), float(rect.height())
        )
        quality = FaceQuality(
            sharpness=sharpness(chip),
            brightness=brightness(chip),
            face_size=float(min(box.width, box.height)),
            pose=pose_from_eyes_nose(points[0:2].mean(0), points[2:4].mean(0), points[4]),
        )
        confidence = hog_confidence(score) if score is not None else 0.0
        return DetectedFace(box, points, confidence, quality, chip)

    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        minimum = self.settings.detect_min_confidence
        with self._dlib_lock:
            faces = [
                self._face(image, rect, score)
                for rect, score in self._hog(image)
                if hog_confidence(score) >= minimum
            ]
        return sorted(faces, key=lambda f: f.box.area, reverse=True)

    def locate(self, image: np.ndarray, box: BoundingBox) -> DetectedFace:
        rect = dlib.rectangle(
            round(box.left),
            round(box.top),
            round(box.left + box.width),
            round(box.top + box.height),
        )
        with self._dlib_lock:
            return self._face(image, rect, None)

    def embed_chips(self, chips: np.ndarray) -> np.ndarray:
        if self._embedder is None:
            s = self.settings
            self._embedder = OnnxEmbedder(
                self._model, s.embed_threads, s.embed_batch_size, s.embed_flip
            )
        return self._embedder.embed(chips)
