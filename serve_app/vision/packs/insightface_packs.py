"""InsightFace packs `buffalo_l`, `buffalo_s`, `antelopev2`: SCRFD detector + ArcFace, 512-D.

Loaded with insightface's `model_zoo` from `<model_dir>/<pack>/*.onnx`, the files of the
official zip. Their weights are licensed for non-commercial research only and are fetched by
the user with `faceserve models pull NAME` (`pull_pack`), never at request time.
"""

from __future__ import annotations

import functools
import http.client
import shutil
import tempfile
import threading
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import cv2
import numpy as np
import onnx
import onnxruntime as ort
from google.protobuf.message import DecodeError
from insightface.model_zoo import model_zoo
from insightface.utils import face_align, storage

from serve_app.config import Settings
from serve_app.errors import InvalidParameter, ModelNotAvailable
from serve_app.vision.calibration import Calibration
from serve_app.vision.packs.base import ModelPack
from serve_app.vision.packs.onnx_embedder import l2_normalise
from serve_app.vision.quality import brightness, pose_from_eyes_nose, sharpness
from serve_app.vision.types import BoundingBox, DetectedFace, FaceQuality

DETECTION = "detection"
RECOGNITION = "recognition"
DET_SIZE = (640, 640)
DET_THRESHOLD = 0.5
CHIP_SIZE = 112
# The release insightface itself downloads its packs from (BASE_REPO_URL in every version).
DEFAULT_URL = storage.BASE_REPO_URL.rstrip("/") + "/{name}.zip"
_CHUNK = 1 << 20

# SCRFD marks the nose *tip*: its frontal drop below the eyes, in inter-ocular distances, is
# taken from ArcFace's alignment template (~0.57), for the pitch estimate.
_EYES_Y = float(face_align.arcface_dst[:2, 1].mean())
_TIP_DROP = (float(face_align.arcface_dst[2, 1]) - _EYES_Y) / float(
    face_align.arcface_dst[1, 0] - face_align.arcface_dst[0, 0]
)


def _graph_task(path: Path) -> str | None:
    """'detection', 'recognition' or None: the signature rule insightface's ModelRouter uses.

    Read from the graph without building a session, so `is_prepared` stays cheap; the pack
    still loads the chosen files through `model_zoo` and checks the task it reports.
    """
    stat = path.stat()
    return _graph_task_cached(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _graph_task_cached(path: str, size: int, mtime_ns: int) -> str | None:
    del size, mtime_ns  # part of the cache key only
    try:
        graph = onnx.load_model(path, load_external_data=False).graph
    except (DecodeError, OSError, ValueError):
        return None
    if len(graph.output) >= 5:
        return DETECTION
    weights = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in weights]
    if not inputs or len(graph.output) != 1:
        return None
    dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or dims[2] != dims[3] or dims[2] in (96, 192):
        return None  # 96 and 192 are the attribute and landmark models
    if dims[2] >= CHIP_SIZE and dims[2] % 16 == 0 and not (len(inputs) == 2 and dims[2] == 128):
        return RECOGNITION
    return None


def find_model_files(pack_dir: Path) -> dict[str, Path]:
    """The first detection and recognition ONNX files in `pack_dir` (or one folder below)."""
    found: dict[str, Path] = {}
    if not pack_dir.is_dir():
        return found
    for path in sorted(pack_dir.glob("*.onnx")) + sorted(pack_dir.glob("*/*.onnx")):
        task = _graph_task(path)
        if task is not None:
            found.setdefault(task, path)
    return found


def _providers() -> list[str]:
    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


def _session_options(threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(0, threads)
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


class InsightFacePack(ModelPack):
    """SCRFD detection (with 5 keypoints), ArcFace's 112x112 alignment and recognizer."""

    version = "1"
    embedding_dim = 512
    # SCRFD's keypoint order; left/right as seen in the image.
    landmark_names = ("eye_left", "eye_right", "nose", "mouth_left", "mouth_right")
    license = "non-commercial research only (InsightFace model license)"
    offline = False

    @classmethod
    def is_prepared(cls, model_dir: Path) -> bool:
        return {DETECTION, RECOGNITION} <= find_model_files(cls.pack_dir(model_dir)).keys()

    @classmethod
    def prepare(cls, model_dir: Path) -> Path:
        """Verify the pulled files are there; this never downloads."""
        if not cls.is_prepared(model_dir):
            raise ModelNotAvailable(
                f"model pack {cls.name} is not in {cls.pack_dir(model_dir)} (it needs a detection "
                f"and a recognition ONNX file): run `faceserve models pull {cls.name}` once "
                "(InsightFace weights: non-commercial research only)"
            )
        return cls.pack_dir(model_dir)

    def __init__(
        self,
        settings: Settings,
        calibration: Calibration | None = None,
        embedding_model: bytes | None = None,
    ) -> None:
        # model_zoo loads from paths, so replicas read the files; embedding_model is unused.
        super().__init__(settings, calibration, embedding_model)
        self._detect_lock = threading.Lock()
        files = find_model_files(self.prepare(settings.model_dir))
        providers = _providers()
        options = _session_options(settings.embed_threads)
        self._detector = self._load(files[DETECTION], DETECTION, providers, options)
        self._recognizer = self._load(files[RECOGNITION], RECOGNITION, providers, options)
        if not self._detector.use_kps:
            raise ModelNotAvailable(f"{files[DETECTION]} gives no keypoints to align faces with")
        width = self._recognizer.output_shape[-1]
        if isinstance(width, int) and width != self.embedding_dim:
            raise ModelNotAvailable(
                f"{files[RECOGNITION]} gives {width}-D embeddings, not {self.embedding_dim}"
            )
        ctx_id = 0 if "CUDAExecutionProvider" in providers else -1
        self._detector.prepare(ctx_id, input_size=DET_SIZE, det_thresh=DET_THRESHOLD)
        self._recognizer.prepare(ctx_id)
        # SCRFD builds its fixed-size session on first use: do it now, not in a request.
        self._detector.detect(np.zeros((*DET_SIZE, 3), dtype=np.uint8))

    @staticmethod
    def _load(path: Path, task: str, providers: list[str], options: ort.SessionOptions):
        model = model_zoo.get_model(str(path), providers=providers, sess_options=options)
        if model is None or model.taskname != task:
            raise ModelNotAvailable(f"{path} is not an InsightFace {task} model")
        return model

    def detect(
        self, image: np.ndarray, *, detector: str | None = None, largest_only: bool = False
    ) -> list[DetectedFace]:
        if detector is not None:
            raise InvalidParameter(f"pack {self.name} has one detector (SCRFD): omit detector")
        bgr = cv2.cvtColor(np.ascontiguousarray(image, dtype=np.uint8), cv2.COLOR_RGB2BGR)
        height, width = bgr.shape[:2]
        scale = min(1.0, self.settings.detect_max_side / max(height, width))
        small = bgr
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            small = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
        to_original = np.array([width / small.shape[1], height / small.shape[0]], dtype=np.float32)
        with self._detect_lock:  # SCRFD keeps mutable caches; one detection at a time
            dets, kpss = self._detector.detect(small)
        faces = [
            self._face(bgr, det[:4].reshape(2, 2) * to_original, kps * to_original, float(det[4]))
            for det, kps in zip(dets, kpss, strict=True)
        ]
        faces.sort(key=lambda f: f.box.area, reverse=True)
        return faces[:1] if largest_only else faces

    def _face(
        self, bgr: np.ndarray, corners: np.ndarray, points: np.ndarray, score: float
    ) -> DetectedFace:
        points = points.astype(np.float32)
        chip_bgr = face_align.norm_crop(bgr, landmark=points, image_size=CHIP_SIZE)
        chip = cv2.cvtColor(chip_bgr, cv2.COLOR_BGR2RGB)
        (x1, y1), (x2, y2) = corners
        box = BoundingBox(float(x1), float(y1), float(x2 - x1), float(y2 - y1))
        quality = FaceQuality(
            sharpness=sharpness(chip),
            brightness=brightness(chip),
            face_size=float(min(box.width, box.height)),
            pose=pose_from_eyes_nose(points[0], points[1], points[2], _TIP_DROP),
        )
        return DetectedFace(box, points, score * 100.0, quality, chip)

    def embed_chips(self, chips: np.ndarray) -> np.ndarray:
        chips = np.ascontiguousarray(chips, dtype=np.uint8)
        if len(chips) == 0:
            return np.zeros((0, self.embedding_dim), dtype=np.float32)
        bgr = chips[..., ::-1]
        vectors = self._features(bgr)
        if self.settings.embed_flip:
            vectors = vectors + self._features(bgr[:, :, ::-1])
        return l2_normalise(vectors)

    def _features(self, bgr_chips: np.ndarray) -> np.ndarray:
        """Raw recognizer outputs, `embed_batch_size` chips per `get_feat` call."""
        step = max(1, self.settings.embed_batch_size)
        batches = [
            self._recognizer.get_feat([np.ascontiguousarray(c) for c in bgr_chips[i : i + step]])
            for i in range(0, len(bgr_chips), step)
        ]
        return np.concatenate(batches, axis=0).astype(np.float32)


class BuffaloLPack(InsightFacePack):
    name = "buffalo_l"


class BuffaloSPack(InsightFacePack):
    name = "buffalo_s"


class AntelopeV2Pack(InsightFacePack):
    name = "antelopev2"


INSIGHTFACE_PACKS: tuple[type[InsightFacePack], ...] = (BuffaloLPack, BuffaloSPack, AntelopeV2Pack)


def download_url(name: str, url_template: str = "") -> str:
    """Where `pull_pack` fetches NAME.zip: `url_template` ({name}) or insightface's release."""
    return (url_template or DEFAULT_URL).format(name=name)


def pull_pack(
    name: str,
    model_dir: Path,
    progress: Callable[[int, int], None] | None = None,
    url_template: str = "",
) -> Path:
    """Download NAME.zip and install its .onnx files in `<model_dir>/<name>/`, atomically.

    `url_template` (settings.insightface_url) points at a mirror; `progress(done, total)` gets
    byte counts (`total` is 0 when the server does not say).
    Raises ModelNotAvailable, saying where to put the files by hand, when the download fails.
    """
    packs = {cls.name: cls for cls in INSIGHTFACE_PACKS}
    if name not in packs:
        raise InvalidParameter(f"{name!r} is not an InsightFace pack; known: {', '.join(packs)}")
    pack = packs[name]
    target = pack.pack_dir(model_dir)
    url = download_url(name, url_template)
    Path(model_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{name}-", dir=model_dir) as tmp:
        archive = Path(tmp) / f"{name}.zip"
        try:
            _download(url, archive, progress)
        except (OSError, ValueError, http.client.HTTPException) as exc:
            raise ModelNotAvailable(
                f"downloading model pack {name} from {url} failed ({_reason(exc)}). Without "
                f"network access, fetch {name}.zip elsewhere and put its .onnx files in {target}/"
            ) from None
        if not zipfile.is_zipfile(archive):
            raise ModelNotAvailable(f"{url} did not return a zip archive")
        staging = Path(tmp) / name
        _extract_onnx(archive, staging)
        if not {DETECTION, RECOGNITION} <= find_model_files(staging).keys():
            raise ModelNotAvailable(f"{url} holds no detection and recognition ONNX models")
        if target.exists():
            target.rename(Path(tmp) / "replaced")
        staging.rename(target)
    return target


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return str(exc) or type(exc).__name__


def _download(url: str, path: Path, progress: Callable[[int, int], None] | None) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "faceserve"})
    with urllib.request.urlopen(request, timeout=60) as response, path.open("wb") as out:
        total = int(response.headers.get("Content-Length") or 0)
        done = 0
        while chunk := response.read(_CHUNK):
            out.write(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done, total)
    if total and done != total:
        raise http.client.IncompleteRead(b"", total - done)


def _extract_onnx(archive: Path, folder: Path) -> None:
    """Copy the archive's .onnx files into `folder`, flattening one level of nesting."""
    folder.mkdir()
    with zipfile.ZipFile(archive) as zf:
        for entry in zf.infolist():
            parts = PurePosixPath(entry.filename).parts
            if entry.is_dir() or not parts[-1].endswith(".onnx") or len(parts) > 2:
                continue
            if parts[0] == "__MACOSX" or parts[-1].startswith("."):
                continue
            # Only the base name is used, so no entry can write outside `folder`.
            with zf.open(entry) as src, (folder / parts[-1]).open("wb") as dst:
                shutil.copyfileobj(src, dst, _CHUNK)
