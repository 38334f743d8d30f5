"""Estimating a pack's false-match curve from photos (what `scripts/calibrate_similarity.py`
writes as the pack's calibration).

Impostor side: every pair of images of two different people (LFW View 1's 4,992 images form
~12.4 million), so the false-match rate is measured, not modelled, down to about 50 pairs in
12 million (FMR 4e-6). Knots every quarter decade of FMR; beyond the last one an exponential
tail fitted (maximum likelihood) to the last decade's exceedances. Face-score tails are
lighter than exponential, so the extrapolation overstates the FMR: the scale promises no
less than it delivers. True-match side: the genuine pairs of a pairs file (DevTrain).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from statistics import NormalDist

import numpy as np

from serve_app.evaluation.embeddings import EmbeddedImages
from serve_app.evaluation.lfw import Pair
from serve_app.vision.calibration import Calibration, fmr_for_similarity

# The last empirical knot keeps at least this many impostor pairs above it (+-14 % noise).
MIN_TAIL_PAIRS = 50
# Knots from FMR 10^-0.5 (below similarity 0; it only shapes the curve's start) every
# quarter decade (5 similarity points).
FIRST_KNOT_DECADES = 0.5
KNOT_STEP_DECADES = 0.25
# Refuse a sample that cannot measure FMR 1e-2 (similarity 20): all the rest would be tail.
MIN_MEASURED_DECADES = 2
TABLE_SIMILARITIES = (0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100)


def impostor_scores(images: EmbeddedImages, block: int = 512) -> np.ndarray:
    """Cosine similarity of every pair of images of two different identities (each once)."""
    vectors = images.vectors.astype(np.float32)
    _, ids = np.unique(images.identities, return_inverse=True)
    n, chunks = len(vectors), []
    for start in range(0, n, block):
        rows = slice(start, min(start + block, n))
        scores = vectors[rows] @ vectors[start:].T
        i = np.arange(rows.start, rows.stop)[:, None]
        j = np.arange(start, n)[None, :]
        keep = (j > i) & (ids[i] != ids[j])
        chunks.append(scores[keep])
    return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)


def genuine_scores(images: EmbeddedImages, pairs: Iterable[Pair]) -> np.ndarray:
    """Cosines of the same-person pairs whose two images are both in `images`."""
    index = {k: i for i, k in enumerate(images.keys)}
    rows = [(index[p.a], index[p.b]) for p in pairs if p.same and p.a in index and p.b in index]
    if not rows:
        return np.zeros(0, np.float32)
    a, b = np.array(rows).T
    return np.einsum("ij,ij->i", images.vectors[a], images.vectors[b])


def _upper_quantile(ascending: np.ndarray, fmr: float) -> float:
    """The cosine with a share `fmr` of the scores at or above it."""
    return float(np.quantile(ascending, 1.0 - fmr))


def _table(
    calibration: Calibration, impostors: np.ndarray, genuine: np.ndarray
) -> tuple[dict, ...]:
    rows = []
    top = measured_up_to(calibration)
    for similarity in TABLE_SIMILARITIES:
        cosine = calibration.cosine_at(similarity)
        above = int(np.count_nonzero(impostors >= cosine))
        row = {
            "similarity": similarity,
            "cosine": round(cosine, 6),
            "fmr": fmr_for_similarity(similarity),
            "fmr_measured": above / len(impostors) if len(impostors) else None,
            "impostor_pairs_above": above,
            "tmr": round(float(np.mean(genuine >= cosine)), 4) if len(genuine) else None,
            "extrapolated": similarity > top,
        }
        rows.append(row)
    return tuple(rows)


def measured_up_to(calibration: Calibration) -> float:
    """The highest similarity still inside the measured knots (above it: the fitted tail)."""
    return float(calibration.similarity(calibration.cosines[-1]))


def estimate_calibration(impostors: np.ndarray, genuine: np.ndarray, source: str) -> Calibration:
    """The pack's calibration from impostor and genuine cosines (see the module docstring)."""
    ascending = np.sort(np.asarray(impostors, dtype=np.float64))
    n = len(ascending)
    if n < MIN_TAIL_PAIRS * 10**MIN_MEASURED_DECADES:
        raise ValueError(
            f"{n} impostor pairs are too few to estimate a false-match curve "
            f"(at least {MIN_TAIL_PAIRS * 10**MIN_MEASURED_DECADES})"
        )
    top = math.log10(n / MIN_TAIL_PAIRS)
    levels = list(np.arange(FIRST_KNOT_DECADES, top, KNOT_STEP_DECADES))
    if top - levels[-1] < KNOT_STEP_DECADES / 2:
        levels[-1] = top  # no sliver of a segment at the end
    else:
        levels.append(top)
    knots = [(_upper_quantile(ascending, 10.0**-level), level) for level in levels]
    # Ties (coarse scores) would make a flat step: keep the first knot of each cosine.
    kept = [knots[0]] + [b for a, b in zip(knots, knots[1:], strict=False) if b[0] > a[0]]
    # Exponential tail: the mean exceedance over the cosine where the last decade starts.
    u = _upper_quantile(ascending, 10.0 ** -max(FIRST_KNOT_DECADES, top - 1.0))
    exceed = ascending[ascending > u] - u
    tail_slope = 1.0 / (float(np.mean(exceed)) * math.log(10.0))
    calibration = Calibration(
        tuple(c for c, _ in kept), tuple(v for _, v in kept), tail_slope, source
    )
    table = _table(calibration, ascending, np.asarray(genuine, dtype=np.float64))
    return Calibration(calibration.cosines, calibration.decades, tail_slope, source, table)


def gaussian_calibration(mean: float, std: float, source: str) -> Calibration:
    """A calibration from a modelled impostor distribution N(mean, std^2): the documented
    default for a pack whose weights we cannot run here (see the script's --model)."""
    normal = NormalDist(mean, std)
    levels = np.arange(FIRST_KNOT_DECADES, 7.0 + 1e-9, KNOT_STEP_DECADES)
    cosines = tuple(normal.inv_cdf(1.0 - 10.0**-level) for level in levels)
    # d(-log10 FMR)/d cosine at the last knot: pdf / (survival * ln 10).
    last = cosines[-1]
    slope = normal.pdf(last) / ((1.0 - normal.cdf(last)) * math.log(10.0))
    calibration = Calibration(cosines, tuple(float(v) for v in levels), slope, source)
    table = tuple(
        {
            "similarity": s,
            "cosine": round(calibration.cosine_at(s), 6),
            "fmr": fmr_for_similarity(s),
            "fmr_measured": None,
            "impostor_pairs_above": None,
            "tmr": None,
            "extrapolated": True,
        }
        for s in TABLE_SIMILARITIES
    )
    return Calibration(calibration.cosines, calibration.decades, slope, source, table)
