"""Embeddings of a folder of LFW-style photos (`NAME/NAME_0001.jpg`), cached in one file.

The calibration script, its tests and the open-set benchmark all need the embeddings of
thousands of LFW images; embedding ~5,000 costs minutes on 2 cores, so they are kept in an
`.npz` file outside the repository. The file records everything that changes a vector (the
ONNX model's hash and the pipeline settings): a cache made under other settings is ignored,
never silently reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from serve_app.config import Settings
from serve_app.evaluation.lfw import Embedding, image_path
from serve_app.evaluation.pipelines import pack_pipeline
from serve_app.vision.packs.base import ModelPack

# Bump when pack_pipeline changes what it computes for an image.
PIPELINE_REVISION = 1


@dataclass(frozen=True)
class EmbeddedImages:
    """One row per image: its identity, its L2-normalised embedding, how the face was found."""

    keys: list[tuple[str, int]]  # (identity, image number), as in LFW pairs files
    vectors: np.ndarray  # (N, D) float32
    detected: np.ndarray  # (N,) bool: False where the detector missed (centre fallback)

    @property
    def identities(self) -> np.ndarray:
        return np.array([name for name, _ in self.keys])

    def subset(self, keys: list[tuple[str, int]]) -> EmbeddedImages:
        index = {k: i for i, k in enumerate(self.keys)}
        rows = [index[k] for k in keys]
        return EmbeddedImages(list(keys), self.vectors[rows], self.detected[rows])


def image_keys(root: Path) -> list[tuple[str, int]]:
    """Every `NAME/NAME_NNNN.jpg` under `root`, sorted by identity then number."""
    keys = []
    for path in sorted(Path(root).glob("*/*.jpg")):
        name, _, number = path.stem.rpartition("_")
        if name == path.parent.name and number.isdigit():
            keys.append((name, int(number)))
    return keys


def default_cache_dir() -> Path:
    """Where embedding caches live: $FACESERVE_EMBEDDING_CACHE, else ~/.cache/faceserve/."""
    explicit = os.environ.get("FACESERVE_EMBEDDING_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "faceserve" / "embeddings"


def pipeline_fingerprint(pack: ModelPack) -> str:
    """What decides a vector: the pack, its embedding model's bytes, the pipeline settings."""
    model = type(pack).embedding_model_path(pack.settings.model_dir)
    s = pack.settings
    parts = {
        "pack": pack.model_version,
        "model_sha256": hashlib.sha256(model.read_bytes()).hexdigest() if model else None,
        "embed_flip": s.embed_flip,
        "detect_max_side": s.detect_max_side,
        "detect_upsample_below": s.detect_upsample_below,
        "detect_min_confidence": s.detect_min_confidence,
        "revision": PIPELINE_REVISION,
    }
    return json.dumps(parts, sort_keys=True)


def _load(cache: Path, fingerprint: str) -> dict[tuple[str, int], tuple[np.ndarray, bool]]:
    if not cache.is_file():
        return {}
    try:
        with np.load(cache, allow_pickle=False) as data:
            if str(data["fingerprint"]) != fingerprint:
                return {}
            names, numbers = data["names"], data["numbers"]
            vectors, detected = data["vectors"], data["detected"]
    except (OSError, KeyError, ValueError):
        return {}  # unreadable or from an older layout: recompute
    return {
        (str(n), int(i)): (v, bool(d))
        for n, i, v, d in zip(names, numbers, vectors, detected, strict=True)
    }


def _save(
    cache: Path, fingerprint: str, rows: dict[tuple[str, int], tuple[np.ndarray, bool]]
) -> None:
    cache.parent.mkdir(parents=True, exist_ok=True)
    keys = sorted(rows)
    tmp = cache.with_name(cache.name + ".tmp.npz")
    np.savez(
        tmp,
        fingerprint=np.array(fingerprint),
        names=np.array([k[0] for k in keys]),
        numbers=np.array([k[1] for k in keys]),
        vectors=np.stack([rows[k][0] for k in keys]).astype(np.float32),
        detected=np.array([rows[k][1] for k in keys]),
    )
    tmp.replace(cache)  # atomic: a reader never sees half a file


def embed_images(
    pack: ModelPack,
    root: Path,
    keys: list[tuple[str, int]],
    cache: Path | None = None,
    progress: bool = False,
) -> EmbeddedImages:
    """Embed `keys` (images under `root`) with the pack's own pipeline, reusing `cache`
    (an .npz file, written back with whatever was newly embedded) when it matches."""
    fingerprint = pipeline_fingerprint(pack)
    rows = _load(cache, fingerprint) if cache else {}
    missing = [k for k in keys if k not in rows]
    pipeline: Embedding = pack_pipeline(pack)
    started = time.monotonic()
    for done, key in enumerate(missing, start=1):
        embedded = pipeline.embed(image_path(root, key))
        rows[key] = (embedded.vector.astype(np.float32), embedded.how == "detected")
        if progress and done % 250 == 0:
            rate = done / (time.monotonic() - started)
            print(f"  {done}/{len(missing)} images embedded ({rate:.1f}/s)", file=sys.stderr)
            if cache:
                _save(cache, fingerprint, rows)  # a long run interrupted keeps its work
    if cache and missing:
        _save(cache, fingerprint, rows)
    return EmbeddedImages(
        list(keys),
        np.stack([rows[k][0] for k in keys]),
        np.array([rows[k][1] for k in keys]),
    )


def lfw_cache_file(pack: ModelPack, root: Path) -> Path:
    """The default cache file for one pack and one image folder."""
    tag = hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:8]
    return default_cache_dir() / f"{pack.name}-{Path(root).parent.name}-{tag}.npz"


def load_pack_for_evaluation(
    name: str, settings: Settings | None = None, calibrated: bool = True
) -> ModelPack:
    """A prepared pack under `settings` (default: the environment's), converting once.
    `calibrated=False` (for the calibration script, which only embeds) does not read the
    pack's committed calibration, so a missing or outdated one cannot stop its remaking."""
    from serve_app.vision.calibration import Calibration
    from serve_app.vision.packs.registry import pack_class

    settings = settings or Settings.from_env()
    cls = pack_class(name)
    cls.prepare(settings.model_dir)
    if calibrated:
        return cls(settings)
    # Any valid curve: similarity is never computed while embedding.
    return cls(settings, calibration=Calibration((-1.0, 1.0), (0.0, 1.0), 1.0, "uncalibrated"))
