"""Similarity calibration and the verification metrics used by `faceserve eval`."""

from __future__ import annotations

import numpy as np
import pytest

from serve_app.evaluation.metrics import accuracy, best_threshold, roc_auc, tar_at_far
from serve_app.vision.calibration import Calibration, load_calibration
from serve_app.vision.packs.registry import PACKS


def test_eighty_percent_sits_at_the_threshold() -> None:
    cal = Calibration(threshold=0.93, slope=80.0)
    assert cal.similarity(0.93) == pytest.approx(80.0)
    values = cal.similarity(np.linspace(-1, 1, 201))
    assert np.all(np.diff(values) >= 0) and values[0] >= 0 and values[-1] <= 100
    for pct in (5.0, 50.0, 80.0, 99.0):
        assert cal.similarity(cal.cosine_at(pct)) == pytest.approx(pct, abs=1e-6)
    assert cal.cosine_at(0) == -1.0 and cal.cosine_at(100) == 1.0


@pytest.mark.parametrize("name", sorted(PACKS))
def test_every_pack_has_committed_calibration(name: str) -> None:
    cal = load_calibration(name)
    assert -1 < cal.threshold < 1 and cal.slope > 0 and cal.source


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
