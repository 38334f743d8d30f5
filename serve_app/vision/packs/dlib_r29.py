"""`dlib-r29`: the offline default pack.

Two detectors: dlib's HOG (from `dlib-bin`) and dlib's CNN (MMOD) face detector from the PyPI
package `face-recognition-models`, converted to ONNX by our converter and run in onnxruntime.
Either way the same 5-point shape predictor, dlib's own face-chip geometry (150x150, padding
0.25) and the 29-conv ResNet descriptor (also converted to ONNX) follow, so embeddings do not
depend on the detector and collections stay compatible. All weights are public domain.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import threading
from pathlib import Path

import cv2
import dlib
import numpy as np
from PIL import Image

from serve_app.config import Settings
from serve_app.errors import InvalidParameter, ModelNotAvailable
from serve_app.vision.calibration import Calibration
from serve_app.vision.convert.dlib_mmod import convert_dlib_mmod
from serve_app.vision.convert.dlib_resnet import convert_dlib_resnet
from serve_app.vision.packs.base import ModelPack
from serve_app.vision.packs.mmod_detector import MmodDetector
from serve_app.vision.packs.onnx_embedder import OnnxEmbedder
from serve_app.vision.quality import brightness, pose_from_eyes_nose, sharpness
from serve_app.vision.types import BoundingBox, DetectedFace, FaceQuality

RESNET_FILE = "dlib_face_recognition_resnet_model_v1.dat"
SHAPE_FILE = "shape_predictor_5_face_landmarks.dat"
ONNX_FILE = "dlib_face_recognition_resnet_v1.onnx"
MMOD_FILE = "mmod_human_face_detector.dat"
MMOD_ONNX_FILE = "dlib_mmod_human_face_detector.onnx"
DETECTORS = ("hog", "cnn")
# Longer side of the cheap first pass when only the largest face is wanted (a search query).
COARSE_SIDE = 640
# The smallest face HOG's 80x80 window finds in the image it scans (no upsampling).
HOG_WINDOW = 80
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
    """0-100 from a detector margin: 50 at the decision boundary, ~95 at a margin of 1.

    Used for both detectors: HOG's SVM and MMOD's network both score 0 at their threshold
    and about 1 for a clear face.
    """
    return 100.0 / (1.0 + math.exp(-3.0 * score))


def check_detector(name: str) -> str:
    """The detector name, or InvalidParameter listing the ones there are."""
    if name not in DETECTORS:
        raise InvalidParameter(f"unknown detector {name!r}; use one of {', '.join(DETECTORS)}")
    return name


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
        target = cls.pack_dir(model_dir)
        manifest = target / MANIFEST_FILE
        if not manifest.is_file() or not all(
            (target / f).is_file() for f in (ONNX_FILE, MMOD_ONNX_FILE)
        ):
            return False
        try:
            recorded = json.loads(manifest.read_text())
            return recorded.get("source_sha256") == _sha256(
                shipped_model_path(RESNET_FILE)
            ) and recorded.get("mmod_sha256") == _sha256(shipped_model_path(MMOD_FILE))
        except (ValueError, AttributeError, ModelNotAvailable):
            return False

    @classmethod
    def prepare(cls, model_dir: Path) -> Path:
        """Convert the shipped ResNet and CNN detector to ONNX once (skipped when done)."""
        target = cls.pack_dir(model_dir)
        if cls.is_prepared(model_dir):
            return target
        source = shipped_model_path(RESNET_FILE)
        convert_dlib_resnet(source, target / ONNX_FILE)
        mmod = shipped_model_path(MMOD_FILE)
        convert_dlib_mmod(mmod, target / MMOD_ONNX_FILE)
        manifest = {
            "source": source.name,
            "source_sha256": _sha256(source),
            "onnx": ONNX_FILE,
            "mmod_source": mmod.name,
            "mmod_sha256": _sha256(mmod),
            "mmod_onnx": MMOD_ONNX_FILE,
        }
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
        self.detector = check_detector(settings.detector)
        # The CNN's session is built on first use too (and only where it is used).
        self._cnn: MmodDetector | None = None
        self._cnn_lock = threading.Lock()

    def _scan_size(self, image: np.ndarray, max_side: int, enlarge: bool = True) -> float:
        """Scale of the copy the CNN scans: at most max_side long, and images shorter than
        detect_upsample_below doubled (as HOG upsamples them) so their small faces reach
        the 80 px detector window."""
        longest = max(image.shape[:2])
        if enlarge and longest < self.settings.detect_upsample_below:
            return min(2.0, max(1.0, max_side / longest))
        return min(1.0, max_side / longest)

    def _hog(
        self, image: np.ndarray, max_side: int, enlarge: bool = True
    ) -> tuple[list[tuple[Rect, float]], float]:
        """HOG on a copy no longer than max_side; (rectangles in original pixels, min face)."""
        height, width = image.shape[:2]
        scale = min(1.0, max_side / max(height, width))
        small = _resized(image, scale)
        # Upsampling inside dlib (pyramid_up) rather than by us: as the detector always ran.
        small_image = max(small.shape[:2]) < self.settings.detect_upsample_below
        upsample = 1 if enlarge and small_image else 0
        with self._dlib_lock:
            rects, scores, _ = self._detector.run(small, upsample, 0.0)
        found = [
            (_scaled((r.left(), r.top(), r.right(), r.bottom()), scale), float(score))
            for r, score in zip(rects, scores, strict=True)
        ]
        return found, HOG_WINDOW / (scale * 2**upsample)

    def _mmod(self) -> MmodDetector:
        with self._cnn_lock:
            if self._cnn is None:
                path = self.pack_dir(self.settings.model_dir) / MMOD_ONNX_FILE
                if not path.is_file():
                    raise ModelNotAvailable(
                        f"{path} is missing: run `faceserve models prepare` once"
                    )
                self._cnn = MmodDetector(path, self.settings.embed_threads)
            return self._cnn

    def _cnn_faces(
        self, image: np.ndarray, max_side: int, enlarge: bool = True
    ) -> tuple[list[tuple[Rect, float]], float]:
        """The CNN on a copy scaled by _scan_size; (rectangles in original pixels, min face)."""
        cnn = self._mmod()
        scale = self._scan_size(image, max_side, enlarge)
        found = [
            (_scaled((d.left, d.top, d.right, d.bottom), scale), d.score)
            for d in cnn.detect(_resized(image, scale))
        ]
        return found, cnn.smallest_face / scale

    def _find(
        self, image: np.ndarray, detector: str, largest_only: bool
    ) -> list[tuple[Rect, float]]:
        run = self._hog if detector == "hog" else self._cnn_faces
        minimum = self.settings.detect_min_confidence
        full_side = self.settings.detect_max_side
        if largest_only and max(image.shape[:2]) > COARSE_SIDE < full_side:
            # A cheap pass first: a face found there at least as large as the smallest one
            # that pass can see is the largest face (anything bigger would have been found).
            found, smallest = run(image, COARSE_SIDE, enlarge=False)
            found = [f for f in found if hog_confidence(f[1]) >= minimum]
            if found:
                best = max(found, key=lambda f: _area(f[0]))
                if min(best[0][2] - best[0][0], best[0][3] - best[0][1]) + 1 >= smallest:
                    return [best]
        found, _ = run(image, full_side)
        return [f for f in found if hog_confidence(f[1]) >= minimum]

    def detect(
        self, image: np.ndarray, *, detector: str | None = None, largest_only: bool = False
    ) -> list[DetectedFace]:
        """Faces, largest first. `detector`: "hog" or "cnn" (default: settings.detector);
        `largest_only`: only the largest face is wanted (a search query), which lets a cheap
        low-resolution pass stand in for the full one when it finds a large face."""
        name = check_detector(detector) if detector is not None else self.detector
        found = self._find(image, name, largest_only)
        with self._dlib_lock:
            faces = [self._face(image, dlib.rectangle(*rect), score) for rect, score in found]
        faces.sort(key=lambda f: f.box.area, reverse=True)
        return faces[:1] if largest_only else faces

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


Rect = tuple[int, int, int, int]


def _area(rect: Rect) -> int:
    return (rect[2] - rect[0] + 1) * (rect[3] - rect[1] + 1)


def _resized(image: np.ndarray, scale: float) -> np.ndarray:
    if scale == 1.0:
        return image
    height, width = image.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if scale < 1.0:
        # Area averaging: antialiased like Pillow's filter, at half its cost (measured on
        # album photos: 7 vs 14.5 ms at 1280 px, the same faces found).
        return cv2.resize(np.ascontiguousarray(image), size, interpolation=cv2.INTER_AREA)
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))


def _scaled(rect: Rect, scale: float) -> Rect:
    """A rectangle found on a copy scaled by `scale`, in original pixels."""
    if scale == 1.0:
        return rect
    return (
        round(rect[0] / scale),
        round(rect[1] / scale),
        round(rect[2] / scale),
        round(rect[3] / scale),
    )
