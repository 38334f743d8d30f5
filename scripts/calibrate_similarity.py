"""Derive a pack's similarity calibration from LFW View 1 DevTrain pairs.

    python scripts/calibrate_similarity.py --pack dlib-r29 \
        --root ../shared/data/faces/lfw_view1/images \
        --pairs ../shared/data/faces/lfw_view1/pairsDevTrain.txt

Embeds every image with the pack's own pipeline (as `faceserve eval lfw` does), picks the
cosine threshold with the best accuracy on the pairs, fits the slope of a logistic
P(same | cosine) on them, and writes serve_app/vision/packs/calibration/<pack>.json so that
80 % similarity sits exactly at that threshold.
"""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path

import numpy as np

from serve_app.config import Settings
from serve_app.evaluation.lfw import pair_scores, parse_pairs
from serve_app.evaluation.metrics import accuracy, best_threshold
from serve_app.evaluation.pipelines import pack_pipeline
from serve_app.vision.calibration import Calibration
from serve_app.vision.packs.registry import pack_class

OUT_DIR = Path(__file__).resolve().parent.parent / "serve_app" / "vision" / "packs" / "calibration"


def logistic_slope(scores: np.ndarray, same: np.ndarray, iterations: int = 50) -> float:
    """Slope b of P(same) = sigmoid(a + b * score), fitted by Newton's method."""
    x = np.stack([np.ones_like(scores), scores], axis=1)
    y = same.astype(np.float64)
    w = np.zeros(2)
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        gradient = x.T @ (y - p)
        hessian = (x * (p * (1 - p))[:, None]).T @ x + 1e-9 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        w += step
        if np.abs(step).max() < 1e-10:
            break
    return float(w[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pack", default="dlib-r29")
    parser.add_argument("--root", required=True)
    parser.add_argument("--pairs", required=True)
    parser.add_argument("--output-dir", type=Path, default=OUT_DIR)
    args = parser.parse_args()

    settings = Settings.from_env()
    cls = pack_class(args.pack)
    cls.prepare(settings.model_dir)
    pack = cls(settings, calibration=Calibration(0.0, 1.0, "uncalibrated"))
    pairs = [p for fold in parse_pairs(Path(args.pairs)) for p in fold]
    scores = pair_scores(pack_pipeline(pack), Path(args.root), pairs, progress=True)
    same = np.array([p.same for p in pairs])
    threshold = best_threshold(scores, same)
    slope = logistic_slope(scores, same)
    calibration = Calibration(
        threshold=round(threshold, 6),
        slope=round(slope, 4),
        source=(
            f"LFW View 1 {Path(args.pairs).name} ({len(pairs)} pairs), faceserve pipeline "
            f"(embed_flip={settings.embed_flip}); accuracy at threshold "
            f"{100 * accuracy(scores, same, threshold):.2f}%; scripts/calibrate_similarity.py, "
            f"{datetime.date.today().isoformat()}"
        ),
    )
    out = args.output_dir / f"{args.pack}.json"
    out.write_text(calibration.to_json())
    print(f"wrote {out}:\n{calibration.to_json()}")


if __name__ == "__main__":
    main()
