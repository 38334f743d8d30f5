"""Similarity calibration and the verification metrics used by `faceserve eval`."""

from __future__ import annotations

import json
from statistics import NormalDist

import numpy as np
import pytest

from serve_app.evaluation.fmr import estimate_calibration, measured_up_to
from serve_app.evaluation.metrics import accuracy, best_threshold, roc_auc, tar_at_far
from serve_app.vision.calibration import (
    Calibration,
    fmr_for_similarity,
    load_calibration,
    similarity_for_fmr,
)
from serve_app.vision.packs.registry import PACKS


def test_the_scale_is_twenty_points_per_decade_of_false_matches() -> None:
    assert [fmr_for_similarity(s) for s in (20, 40, 60, 80, 100)] == pytest.approx(
        [1e-2, 1e-3, 1e-4, 1e-5, 1e-6]
    )
    assert fmr_for_similarity(0) == 1.0
    assert similarity_for_fmr(1e-5) == pytest.approx(80.0)
    assert similarity_for_fmr(0.5) == 0.0 and similarity_for_fmr(1e-9) == 100.0


def _gaussian_impostors(n: int) -> np.ndarray:
    return np.random.default_rng(13).normal(0.0, 0.1, n)


def test_estimated_curve_matches_a_known_impostor_distribution() -> None:
    """Impostor cosines ~ N(0, 0.1^2): where the pairs are enough the promised FMR is the true
    one; beyond them the exponential tail promises more false matches than happen, never
    fewer (a Gaussian tail is lighter)."""
    impostors = _gaussian_impostors(400_000)
    cal = estimate_calibration(impostors, np.array([0.6, 0.7]), "synthetic")
    truth = NormalDist(0.0, 0.1)
    assert 50 < measured_up_to(cal) < 60  # 400k pairs: ~50 of them above FMR 1.25e-4
    for s in (20, 30, 40, 50):
        true_fmr = 1 - truth.cdf(cal.cosine_at(s))
        assert true_fmr == pytest.approx(fmr_for_similarity(s), rel=0.2)
    for s in (70, 80, 90, 100):
        true_fmr = 1 - truth.cdf(cal.cosine_at(s))
        assert fmr_for_similarity(s) / 20 < true_fmr <= fmr_for_similarity(s)
    assert [r["similarity"] for r in cal.table][:3] == [0, 10, 20]
    assert cal.table[2]["tmr"] == 1.0 and cal.table[2]["fmr_measured"] == pytest.approx(
        1e-2, rel=0.05
    )


def test_too_few_impostor_pairs_are_refused() -> None:
    with pytest.raises(ValueError, match="too few"):
        estimate_calibration(_gaussian_impostors(1000), np.array([0.9]), "tiny")


@pytest.mark.parametrize("name", sorted(PACKS))
def test_every_pack_maps_monotonically_and_inverts_exactly(name: str) -> None:
    cal = load_calibration(name)
    assert cal.source and len(cal.cosines) >= 10
    cosines = np.linspace(-1, 1, 40_001)
    values = cal.similarity(cosines)
    assert np.all(np.diff(values) >= 0) and values[0] == 0.0
    inside = (values > 0) & (values < 100)
    assert np.all(np.diff(values[inside]) > 0)  # strictly: no flat step where it matters
    for s in (0.5, 5.0, 20.0, 33.3, 40.0, 60.0, 77.7, 80.0, 95.0, 100.0):
        c = cal.cosine_at(s)
        assert cal.similarity(c) == pytest.approx(s, abs=1e-9)
        assert cal.similarity(c + 1e-7) >= s - 1e-9 and cal.similarity(c - 1e-4) < s
    assert cal.cosine_at(0) == -1.0
    # The committed table says what the mapping does.
    for row in cal.table:
        if row["similarity"] > 0:
            assert cal.cosine_at(row["similarity"]) == pytest.approx(row["cosine"], abs=2e-6)
            assert row["fmr"] == pytest.approx(fmr_for_similarity(row["similarity"]))


def test_calibration_round_trips_through_json() -> None:
    cal = load_calibration("dlib-r29")
    again = Calibration.from_dict(json.loads(cal.to_json()))
    assert again == cal and again.cosine_at(80) == pytest.approx(cal.cosine_at(80))
    assert cal.similarity(np.array([[0.5, 0.99]])).shape == (1, 2)


def test_a_curve_must_increase() -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        Calibration((0.1, 0.2, 0.2), (1.0, 2.0, 3.0), 10.0)
    with pytest.raises(ValueError, match="strictly increasing"):
        Calibration((0.1, 0.2), (1.0, 2.0), -1.0)


def test_best_threshold_separates_separable_scores() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    same = np.array([0, 0, 0, 1, 1, 1], dtype=bool)
    t = best_threshold(scores, same)
    assert 0.3 < t < 0.7
    assert accuracy(scores, same, t) == 1.0
    assert roc_auc(scores, same) == 1.0


def test_auc_and_tar_on_known_values() -> None:
    scores = np.array([0.9, 0.8, 0.4, 0.6, 0.3, 0.2])
    same = np.array([1, 1, 1, 0, 0, 0], dtype=bool)
    # Of 9 positive/negative pairs, only (0.4 vs 0.6) is misordered.
    assert roc_auc(scores, same) == pytest.approx(8 / 9)
    r = tar_at_far(scores, same, 1e-3)
    assert r.far == 0.0 and r.tar == pytest.approx(2 / 3) and r.threshold == 0.6
    assert roc_auc(np.array([0.5, 0.5]), np.array([True, False])) == 0.5
