"""Verification metrics over pair scores (higher score = more likely the same person)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """The threshold maximising accuracy of `score >= threshold` (midpoint between scores)."""
    order = np.argsort(scores)
    s, y = scores[order], same[order].astype(np.int64)
    # Predicting "same" for indices >= i: correct = negatives below i + positives from i on.
    neg_below = np.concatenate([[0], np.cumsum(1 - y)])
    pos_from = np.concatenate([np.cumsum(y[::-1])[::-1], [0]])
    correct = neg_below + pos_from
    i = int(np.argmax(correct))
    if i == 0:
        return float(s[0]) - 1e-6
    if i == len(s):
        return float(s[-1]) + 1e-6
    return float((s[i - 1] + s[i]) / 2.0)


def accuracy(scores: np.ndarray, same: np.ndarray, threshold: float) -> float:
    return float(np.mean((scores >= threshold) == same.astype(bool)))


def roc_auc(scores: np.ndarray, same: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties counted half)."""
    pos, neg = scores[same.astype(bool)], scores[~same.astype(bool)]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    ranks = _average_ranks(np.concatenate([pos, neg]))
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2.0
    return float(u / (len(pos) * len(neg)))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), dtype=np.float64)
    sorted_vals = values[order]
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and sorted_vals[j + 1] == sorted_vals[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


@dataclass(frozen=True)
class TarAtFar:
    tar: float
    far: float  # the false accept rate actually achieved (<= the target)
    threshold: float


def tar_at_far(scores: np.ndarray, same: np.ndarray, target_far: float) -> TarAtFar:
    """True accept rate at the strictest threshold whose false accept rate is <= target_far."""
    pos, neg = scores[same.astype(bool)], np.sort(scores[~same.astype(bool)])[::-1]
    allowed = int(np.floor(target_far * len(neg)))
    # Accept strictly above the (allowed+1)-th highest negative score.
    threshold = float(neg[allowed]) if allowed < len(neg) else float("-inf")
    tar = float(np.mean(pos > threshold)) if len(pos) else float("nan")
    far = float(np.mean(neg > threshold)) if len(neg) else float("nan")
    return TarAtFar(tar=tar, far=far, threshold=threshold)
