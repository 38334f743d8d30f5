"""Similarity as a percentage, calibrated per model pack.

A pack's raw score is the cosine similarity of two L2-normalised embeddings. We map it with
a logistic curve placed so that 80 % sits exactly at the pack's best verification threshold
(chosen on LFW DevTrain by `scripts/calibrate_similarity.py`), whose slope comes from a
logistic fit on the same pairs. So `threshold=80` means "same person by the pack's best
operating point" whatever the model.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from importlib import resources

import numpy as np

from serve_app.errors import ModelNotAvailable

# sigmoid(ln 4) = 0.8: the offset that puts 80 % at the threshold.
_LOGIT_80 = math.log(4.0)


@dataclass(frozen=True)
class Calibration:
    """Maps cosine similarity to a 0-100 similarity. `threshold` is a cosine similarity."""

    threshold: float
    slope: float
    source: str = ""

    def similarity(self, cosine: float | np.ndarray) -> float | np.ndarray:
        """0-100 similarity for one or many cosine similarities."""
        z = self.slope * (np.asarray(cosine, dtype=np.float64) - self.threshold) + _LOGIT_80
        result = 100.0 / (1.0 + np.exp(-z))
        return float(result) if np.ndim(result) == 0 else result

    def cosine_at(self, similarity: float) -> float:
        """The cosine similarity that maps to `similarity` % (for pushing thresholds down)."""
        if similarity <= 0.0:
            return -1.0
        if similarity >= 100.0:
            return 1.0
        p = similarity / 100.0
        return self.threshold + (math.log(p / (1.0 - p)) - _LOGIT_80) / self.slope

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"


def load_calibration(pack_name: str) -> Calibration:
    """The committed calibration for a pack (`serve_app/vision/packs/calibration/NAME.json`)."""
    try:
        text = (
            resources.files("serve_app.vision.packs")
            .joinpath("calibration", f"{pack_name}.json")
            .read_text()
        )
    except FileNotFoundError:
        raise ModelNotAvailable(
            f"no similarity calibration committed for pack {pack_name!r}"
        ) from None
    data = json.loads(text)
    return Calibration(float(data["threshold"]), float(data["slope"]), str(data.get("source", "")))
