"""The LFW verification protocol.

Pairs files: the first line is `N` (one fold of N same + N different pairs, as View 1's
DevTrain / DevTest) or `FOLDS N` (View 2's pairs.txt: FOLDS folds of N + N). A 3-field line
is a same-person pair `name i j`, a 4-field line a different-person pair `name1 i name2 j`.
With several folds each fold's threshold is chosen on the others (10-fold cross-validation);
with one fold it is chosen on a separate training pairs file.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from serve_app.errors import InvalidParameter
from serve_app.evaluation.metrics import accuracy, best_threshold, roc_auc, tar_at_far


@dataclass(frozen=True)
class Pair:
    a: tuple[str, int]
    b: tuple[str, int]
    same: bool


def parse_pairs(path: Path) -> list[list[Pair]]:
    """Folds of pairs from an LFW pairs file."""
    try:
        lines = [line.split() for line in Path(path).read_text().splitlines() if line.strip()]
    except OSError as exc:
        raise InvalidParameter(f"cannot read pairs file {path}: {exc.strerror}") from None
    if not lines or not all(x.isdigit() for x in lines[0]) or len(lines[0]) > 2:
        raise InvalidParameter(f"{path} does not start with an LFW pairs header")
    folds_n, per_fold = (1, int(lines[0][0])) if len(lines[0]) == 1 else map(int, lines[0])
    body = lines[1:]
    if len(body) != folds_n * 2 * per_fold:
        raise InvalidParameter(
            f"{path}: header promises {folds_n} x 2 x {per_fold} pairs, found {len(body)}"
        )
    pairs = []
    for number, fields in enumerate(body, start=2):
        if len(fields) == 3:
            pairs.append(Pair((fields[0], int(fields[1])), (fields[0], int(fields[2])), True))
        elif len(fields) == 4:
            pairs.append(Pair((fields[0], int(fields[1])), (fields[2], int(fields[3])), False))
        else:
            raise InvalidParameter(f"{path}:{number}: expected 3 or 4 fields")
    size = 2 * per_fold
    return [pairs[i * size : (i + 1) * size] for i in range(folds_n)]


def image_path(root: Path, key: tuple[str, int]) -> Path:
    name, number = key
    return Path(root) / name / f"{name}_{number:04d}.jpg"


@dataclass
class Embedded:
    """What a pipeline made of one image."""

    vector: np.ndarray
    how: str  # "detected" | "fallback" (detector missed; face assumed at the centre)
    seconds: float


@dataclass
class Embedding:
    """A pipeline under evaluation: image path -> embedding, and how to score two of them."""

    name: str
    embed: Callable[[Path], Embedded]
    score: Callable[[np.ndarray, np.ndarray], float]
    cache: dict[Path, Embedded] = field(default_factory=dict)

    def get(self, path: Path) -> Embedded:
        if path not in self.cache:
            self.cache[path] = self.embed(path)
        return self.cache[path]


@dataclass(frozen=True)
class LfwResult:
    pipeline: str
    protocol: str
    pairs: int
    accuracy: float
    accuracy_std: float
    roc_auc: float
    tar_at_far_1e3: float
    far_achieved: float
    threshold: float | None
    images: int
    no_face_detected: int
    no_face_policy: str
    median_ms_per_image: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def pair_scores(pipeline: Embedding, root: Path, pairs: list[Pair], progress: bool) -> np.ndarray:
    keys = list(dict.fromkeys(k for p in pairs for k in (p.a, p.b)))
    started, done = time.monotonic(), 0
    for key in keys:
        path = image_path(root, key)
        if path not in pipeline.cache:
            pipeline.get(path)
            done += 1
            if progress and done % 250 == 0:
                rate = done / (time.monotonic() - started)
                print(
                    f"  [{pipeline.name}] {done} images embedded ({rate:.1f}/s)",
                    file=sys.stderr,
                    flush=True,
                )
    return np.array(
        [
            pipeline.score(
                pipeline.get(image_path(root, p.a)).vector,
                pipeline.get(image_path(root, p.b)).vector,
            )
            for p in pairs
        ]
    )


def evaluate(
    pipeline: Embedding,
    root: Path,
    test_folds: list[list[Pair]],
    train_folds: list[list[Pair]] | None = None,
    progress: bool = True,
) -> LfwResult:
    """Run the protocol for one pipeline (see the module docstring)."""
    all_test = [p for fold in test_folds for p in fold]
    scores = pair_scores(pipeline, root, all_test, progress)
    same = np.array([p.same for p in all_test])
    threshold: float | None
    if len(test_folds) > 1:
        protocol = f"{len(test_folds)}-fold cross-validation"
        accs, offset = [], 0
        bounds = []
        for fold in test_folds:
            bounds.append((offset, offset + len(fold)))
            offset += len(fold)
        for lo, hi in bounds:
            mask = np.ones(len(all_test), dtype=bool)
            mask[lo:hi] = False
            t = best_threshold(scores[mask], same[mask])
            accs.append(accuracy(scores[lo:hi], same[lo:hi], t))
        acc, acc_std, threshold = float(np.mean(accs)), float(np.std(accs)), None
    else:
        if not train_folds:
            raise InvalidParameter(
                "a single-fold pairs file needs --train-pairs to pick a threshold"
            )
        train = [p for fold in train_folds for p in fold]
        train_scores = pair_scores(pipeline, root, train, progress)
        threshold = best_threshold(train_scores, np.array([p.same for p in train]))
        protocol = "threshold from the training pairs, one test fold"
        acc, acc_std = accuracy(scores, same, threshold), 0.0
    far = tar_at_far(scores, same, 1e-3)
    used = [pipeline.cache[image_path(root, k)] for p in all_test for k in (p.a, p.b)]
    unique = {id(e): e for e in used}.values()
    return LfwResult(
        pipeline=pipeline.name,
        protocol=protocol,
        pairs=len(all_test),
        accuracy=acc,
        accuracy_std=acc_std,
        roc_auc=roc_auc(scores, same),
        tar_at_far_1e3=far.tar,
        far_achieved=far.far,
        threshold=threshold,
        images=len(unique),
        no_face_detected=sum(1 for e in unique if e.how != "detected"),
        no_face_policy="the face is assumed at the image centre (LFW crops are centred) "
        "and aligned from there",
        median_ms_per_image=statistics.median(e.seconds for e in pipeline.cache.values()) * 1000,
    )
