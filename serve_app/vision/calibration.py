"""Similarity as a percentage that means a false-match rate, the same for every model pack.

    similarity = 20 * (-log10 FMR) - 20, clipped to [0, 100]

so every 20 points is ten times fewer false matches: 20 <-> 1 in 100 comparisons of two
different people, 40 <-> 1e-3, 60 <-> 1e-4, 80 <-> 1e-5, 100 <-> 1e-6 (and beyond). A pack's
calibration is the curve cosine -> -log10 FMR ("decades") estimated on impostor pairs by
`scripts/calibrate_similarity.py`: a monotone cubic (Fritsch-Carlson) through empirical
knots, continued by a fitted exponential tail where the pairs run out. So `threshold=80`
promises the same risk of a stranger matching whatever the model: 1 in 100,000 comparisons,
i.e. about 1 % of searches by a stranger in a collection of 1,000 faces.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np

from serve_app.errors import ModelNotAvailable

# similarity = POINTS_PER_DECADE * decades - OFFSET (decades = -log10 FMR): 80 <-> 1e-5.
POINTS_PER_DECADE = 20.0
OFFSET = 20.0


def similarity_for_fmr(fmr: float) -> float:
    """The similarity (0-100) whose threshold promises false-match rate `fmr`."""
    return float(np.clip(POINTS_PER_DECADE * -np.log10(fmr) - OFFSET, 0.0, 100.0))


def fmr_for_similarity(similarity: float) -> float:
    """The false-match rate a threshold of `similarity` promises (1.0 at 0: no filtering)."""
    if similarity <= 0.0:
        return 1.0
    return float(10.0 ** (-(similarity + OFFSET) / POINTS_PER_DECADE))


def _pchip_slopes(x: np.ndarray, y: np.ndarray, end_slope: float) -> np.ndarray:
    """Fritsch-Carlson derivatives: the cubic through the knots never overshoots, so the
    curve is monotone wherever the knots are. `end_slope` (the tail's) joins the tail C1."""
    h, secant = np.diff(x), np.diff(y) / np.diff(x)
    d = np.empty_like(x)
    w1, w2 = 2 * h[1:] + h[:-1], h[1:] + 2 * h[:-1]
    d[1:-1] = (w1 + w2) / (w1 / secant[:-1] + w2 / secant[1:])
    d[0] = secant[0]
    d[-1] = min(end_slope, 3.0 * secant[-1])  # above 3x the secant the cubic would overshoot
    return d


@dataclass(frozen=True)
class Calibration:
    """Maps a cosine similarity to a 0-100 similarity through the pack's false-match curve.

    `cosines` (strictly increasing) and `decades` (-log10 FMR there, strictly increasing) are
    the knots; beyond the last one -log10 FMR grows by `tail_slope` per unit of cosine (an
    exponential tail), before the first one along the first cubic's slope.
    """

    cosines: tuple[float, ...]
    decades: tuple[float, ...]
    tail_slope: float
    source: str = ""
    # Descriptive rows (similarity, cosine, promised and measured FMR, true-match rate)
    # written by the calibration script; the mapping itself needs only the knots.
    table: tuple[dict[str, Any], ...] = field(default=(), compare=False)
    _slopes: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        x, y = np.asarray(self.cosines, np.float64), np.asarray(self.decades, np.float64)
        if len(x) < 2 or len(x) != len(y):
            raise ValueError("a calibration needs at least two (cosine, decades) knots")
        if np.any(np.diff(x) <= 0) or np.any(np.diff(y) <= 0) or self.tail_slope <= 0:
            raise ValueError("calibration knots and tail must be strictly increasing")
        object.__setattr__(self, "_slopes", _pchip_slopes(x, y, self.tail_slope))

    def fmr_decades(self, cosine: float | np.ndarray) -> np.ndarray:
        """-log10 of the false-match rate at `cosine` (vectorised)."""
        c = np.atleast_1d(np.asarray(cosine, dtype=np.float64))
        x, y, d = np.asarray(self.cosines), np.asarray(self.decades), self._slopes
        out = np.empty_like(c)
        below, above = c <= x[0], c >= x[-1]
        out[below] = y[0] + d[0] * (c[below] - x[0])
        out[above] = y[-1] + self.tail_slope * (c[above] - x[-1])
        inside = ~(below | above)
        i = np.searchsorted(x, c[inside], side="right") - 1
        out[inside] = self._hermite(i, (c[inside] - x[i]) / (x[i + 1] - x[i]))
        return out

    def _hermite(self, i: np.ndarray | int, t: np.ndarray | float) -> np.ndarray:
        x, y, d = np.asarray(self.cosines), np.asarray(self.decades), self._slopes
        h = x[i + 1] - x[i]
        t2, t3 = t * t, t * t * t
        return (
            (2 * t3 - 3 * t2 + 1) * y[i]
            + (t3 - 2 * t2 + t) * h * d[i]
            + (-2 * t3 + 3 * t2) * y[i + 1]
            + (t3 - t2) * h * d[i + 1]
        )

    def similarity(self, cosine: float | np.ndarray) -> float | np.ndarray:
        """0-100 similarity for one or many cosine similarities."""
        scores = np.clip(POINTS_PER_DECADE * self.fmr_decades(cosine) - OFFSET, 0.0, 100.0)
        return float(scores[0]) if np.ndim(cosine) == 0 else scores.reshape(np.shape(cosine))

    def cosine_at(self, similarity: float) -> float:
        """The cosine similarity that maps to `similarity` (for pushing thresholds down to
        the vector store): `similarity(cosine_at(s)) == s` for 0 < s <= 100, and a cosine
        at `cosine_at(s)` or above has similarity >= s (to rounding). 0 -> -1.0: everything."""
        if similarity <= 0.0:
            return -1.0
        target = (min(similarity, 100.0) + OFFSET) / POINTS_PER_DECADE
        x, y = self.cosines, self.decades
        if target <= y[0]:
            return x[0] + (target - y[0]) / float(self._slopes[0])
        if target >= y[-1]:
            return x[-1] + (target - y[-1]) / self.tail_slope
        i = bisect.bisect_right(y, target) - 1
        lo, hi = 0.0, 1.0  # the cubic is increasing on the segment: bisect its parameter
        for _ in range(60):
            mid = (lo + hi) / 2
            if float(self._hermite(i, mid)) < target:
                lo = mid
            else:
                hi = mid
        return x[i] + hi * (x[i + 1] - x[i])

    def to_dict(self) -> dict[str, Any]:
        return {
            "scale": "similarity = 20 * (-log10 FMR) - 20, clipped to [0, 100]",
            "source": self.source,
            "cosines": [round(c, 6) for c in self.cosines],
            "decades": [round(v, 6) for v in self.decades],
            "tail_slope": round(self.tail_slope, 6),
            "table": list(self.table),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        return cls(
            tuple(float(c) for c in data["cosines"]),
            tuple(float(v) for v in data["decades"]),
            float(data["tail_slope"]),
            str(data.get("source", "")),
            tuple(data.get("table", ())),
        )


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
    return Calibration.from_dict(json.loads(text))
