"""Open-set identification on LFW View 1, and the full similarity calibration run.

    nice -n 10 python -m bench.openset --benchmarks BENCHMARKS.md

Open set, as a user's collection meets the world: one photo of every person with >= 2
photos is enrolled (the gallery), then searched with another photo of each (they should be
found first, at or above the threshold) and with the photo of every person with only one
(strangers: any match at or above the threshold is a false alarm). Search is exact cosine
top-1 over the gallery, what the store does below 5,000 faces, with the service's threshold
test `similarity >= threshold`. Both thresholds are compared: the old default (80 on the
logistic scale anchored at the 1:1 verification threshold) and the new search default.

Also writes the calibration section: `scripts/calibrate_similarity.py` run on all images
(its table, and a held-out check: calibrated on DevTrain's people only, measured on
DevTest's).
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import numpy as np

from bench.report import replace_section
from serve_app.evaluation.embeddings import (
    EmbeddedImages,
    embed_images,
    image_keys,
    lfw_cache_file,
    load_pack_for_evaluation,
)
from serve_app.evaluation.fmr import (
    estimate_calibration,
    genuine_scores,
    impostor_scores,
    measured_up_to,
)
from serve_app.evaluation.lfw import parse_pairs
from serve_app.service import thresholds
from serve_app.vision.calibration import Calibration, fmr_for_similarity, load_calibration

REPO = Path(__file__).resolve().parent.parent
LFW = REPO.parent / "shared" / "data" / "faces" / "lfw_view1"
# 80 % on the scale before issue 13: dlib-r29's best-accuracy cosine on DevTrain (the
# committed calibration until then: threshold 0.912083, slope 150.2752).
OLD_DEFAULT_COSINE = 0.912083
GALLERY_SIZES = (40, 100, 1000)


def split(images: EmbeddedImages) -> tuple[list[int], list[int], list[int]]:
    """Row indices: gallery (first photo of each person with >= 2), their mated probes
    (second photo), strangers (the photo of each person with one)."""
    by_person: dict[str, list[int]] = {}
    for row, (name, _) in enumerate(images.keys):
        by_person.setdefault(name, []).append(row)
    gallery, mated, strangers = [], [], []
    for rows in by_person.values():
        if len(rows) >= 2:
            gallery.append(rows[0])
            mated.append(rows[1])
        else:
            strangers.append(rows[0])
    return gallery, mated, strangers


def top1(vectors: np.ndarray, gallery: list[int], probes: list[int]) -> tuple[np.ndarray, ...]:
    scores = vectors[probes] @ vectors[gallery].T
    best = np.argmax(scores, axis=1)
    return best, scores[np.arange(len(probes)), best]


def open_set_rows(images: EmbeddedImages, calibration: Calibration) -> list[str]:
    gallery_all, mated_all, strangers = split(images)
    new = thresholds.SEARCH
    new_cosine = calibration.cosine_at(new)
    rows = [
        "| gallery (faces) | threshold | cosine | rank-1 hit rate | strangers matched |",
        "|---:|---|---:|---:|---:|",
    ]
    figures = {}
    sizes = [n for n in GALLERY_SIZES if n < len(gallery_all)] + [len(gallery_all)]
    for size in sizes:
        # A spread of the enrolled people (every k-th), not the first names of the alphabet.
        pick = np.linspace(0, len(gallery_all) - 1, size).round().astype(int)
        gallery = [gallery_all[i] for i in pick]
        mated = [mated_all[i] for i in pick]
        best, score = top1(images.vectors, gallery, mated)
        right = best == np.arange(len(gallery))
        _, stranger_score = top1(images.vectors, gallery, strangers)
        for label, cosine in (
            ("old default: 80 (old scale)", OLD_DEFAULT_COSINE),
            (f"new default: {new:g} (FMR {fmr_for_similarity(new):.0e})", new_cosine),
        ):
            hit = float(np.mean(right & (score >= cosine)))
            false_alarm = float(np.mean(stranger_score >= cosine))
            figures[(size, label[:3])] = (hit, false_alarm)
            rows.append(
                f"| {size:,} | {label} | {cosine:.4f} | {100 * hit:.1f}% | "
                f"{100 * false_alarm:.2f}% ({int(round(false_alarm * len(strangers)))} "
                f"of {len(strangers):,}) |"
            )
    rows += ["", *frontier_rows(images, calibration, gallery_all, mated_all, strangers)]
    old_as_new = float(calibration.similarity(OLD_DEFAULT_COSINE))
    rows += [
        "",
        f"{len(images.keys):,} images: {len(gallery_all):,} people with >= 2 photos (one "
        f"enrolled, the next one searched), {len(strangers):,} strangers (people with one "
        f"photo); galleries below the full one are an even spread of the enrolled people. "
        f"Rank-1 hit: the right person is the top match and at or above the threshold. "
        f"The old default (cosine {OLD_DEFAULT_COSINE}) is {old_as_new:.1f} on the new scale "
        f"(FMR {fmr_for_similarity(old_as_new):.1e} per comparison).",
    ]
    return rows


def frontier_rows(
    images: EmbeddedImages,
    calibration: Calibration,
    gallery_all: list[int],
    mated_all: list[int],
    strangers: list[int],
) -> list[str]:
    """Rank-1 hit rate and strangers matched at every threshold, for choosing one; and the
    best either goal allows the other, with a 1,000-face gallery."""
    size = min(1000, len(gallery_all))
    pick = np.linspace(0, len(gallery_all) - 1, size).round().astype(int)
    gallery = [gallery_all[i] for i in pick]
    best, score = top1(images.vectors, gallery, [mated_all[i] for i in pick])
    right = best == np.arange(size)
    _, stranger_score = top1(images.vectors, gallery, strangers)
    rank1 = float(np.mean(right))

    def at(s: float) -> tuple[float, float]:
        c = calibration.cosine_at(s)
        return float(np.mean(right & (score >= c))), float(np.mean(stranger_score >= c))

    rows = [
        f"Every threshold, {size:,}-face gallery (rank-1 with no threshold at all: "
        f"{100 * rank1:.1f}%):",
        "",
        "| threshold | FMR per comparison | rank-1 hit rate | strangers matched |",
        "|---:|---:|---:|---:|",
    ]
    for s in (20, 40, 50, 60, 70, 80, 90):
        hit, false_alarm = at(s)
        rows.append(
            f"| {s} | {fmr_for_similarity(s):.0e} | {100 * hit:.1f}% | {100 * false_alarm:.2f}% |"
        )
    grid = np.arange(0.0, 100.01, 0.5)
    curve = [(s, *at(s)) for s in grid]
    safe = next(((s, h, f) for s, h, f in curve if f <= 0.01), None)
    found = [(s, h, f) for s, h, f in curve if h >= 0.90]
    rows.append("")
    if safe:
        rows.append(
            f"Strangers matched <= 1 % first at threshold {safe[0]:g}: rank-1 {100 * safe[1]:.1f}%."
        )
    if found:
        s, h, f = found[-1]
        rows.append(
            f"Rank-1 >= 90 % last at threshold {s:g}: strangers matched {100 * f:.1f}%. "
            + (
                "Both goals are met there."
                if f <= 0.01
                else "No threshold meets both goals with this pack on this gallery."
            )
        )
    return rows


def calibration_rows(images: EmbeddedImages, root: Path) -> list[str]:
    pairs = [p for fold in parse_pairs(root.parent / "pairsDevTrain.txt") for p in fold]
    impostors = impostor_scores(images)
    genuine = genuine_scores(images, pairs)
    full = estimate_calibration(impostors, genuine, "bench")
    committed = load_calibration("dlib-r29")
    rows = [
        "| similarity | FMR promised | cosine | impostor pairs at or above | FMR measured "
        "| TMR (DevTrain genuine) | committed cosine |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in full.table:
        s = row["similarity"]
        note = " (tail)" if row["extrapolated"] else ""
        rows.append(
            f"| {s} | {row['fmr']:.0e} | {row['cosine']:.4f}{note} | "
            f"{row['impostor_pairs_above']:,} | {row['fmr_measured']:.2e} | "
            f"{100 * row['tmr']:.1f}% | {committed.cosine_at(s) if s else -1.0:.4f} |"
        )
    # Held out: calibrate on DevTrain's people only, measure on DevTest's (disjoint people).
    train_names = {n for p in pairs for n in (p.a[0], p.b[0])}
    test_pairs = [p for fold in parse_pairs(root.parent / "pairsDevTest.txt") for p in fold]
    test_names = {n for p in test_pairs for n in (p.a[0], p.b[0])}
    train = images.subset([k for k in images.keys if k[0] in train_names])
    test = images.subset([k for k in images.keys if k[0] in test_names])
    held = estimate_calibration(impostor_scores(train), genuine_scores(train, pairs), "held")
    test_impostors = impostor_scores(test)
    test_genuine = genuine_scores(test, test_pairs)
    rows += [
        "",
        f"{len(images.keys):,} images, {len(impostors):,} impostor pairs (every pair of two "
        f"different people), {len(genuine):,} genuine pairs (DevTrain); measured up to "
        f"similarity {measured_up_to(full):.1f}, the fitted exponential tail above "
        f"(marked). Held out — calibrated on DevTrain's {len(train.keys):,} images only, "
        f"measured on DevTest's {len(test.keys):,} ({len(test_impostors):,} impostor pairs, "
        f"{len(test_genuine)} genuine):",
        "",
        "| similarity | FMR promised | DevTest FMR (held-out calibration) | DevTest FMR "
        "(committed) | DevTest TMR (committed) |",
        "|---:|---:|---:|---:|---:|",
    ]
    for s in (40, 60, 80):
        held_fmr = float(np.mean(test_impostors >= held.cosine_at(s)))
        c = committed.cosine_at(s)
        rows.append(
            f"| {s} | {fmr_for_similarity(s):.0e} | {held_fmr:.2e} | "
            f"{float(np.mean(test_impostors >= c)):.2e} | "
            f"{100 * float(np.mean(test_genuine >= c)):.1f}% |"
        )
    return rows


def sections(pack_name: str = "dlib-r29") -> list[tuple[str, list[str]]]:
    """The two BENCHMARKS.md sections (skipped with a reason without the photos)."""
    titles = (
        "Similarity calibration: false-match rate on LFW View 1 (dlib-r29)",
        "Open-set identification on LFW View 1 (search at the default threshold)",
    )
    root = LFW / "images"
    if not root.is_dir():
        return [(t, [f"(skipped: {root} not found)"]) for t in titles]
    pack = load_pack_for_evaluation(pack_name)
    images = embed_images(pack, root, image_keys(root), lfw_cache_file(pack, root), True)
    from bench.run import machine

    command = "`nice -n 10 python -m bench.openset --benchmarks BENCHMARKS.md` (or `make bench`)"
    header = [
        f"- command: {command}",
        f"- date: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}; machine: {machine()}",
        f"- pack: {pack.model_version}; figures are counts, not timings (no CPU load effect)",
        "",
    ]
    return [
        (titles[0], [*header, *calibration_rows(images, root)]),
        (titles[1], [*header, *open_set_rows(images, pack.calibration)]),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmarks", type=Path, help="replace these sections in this file")
    args = parser.parse_args()
    found = sections()
    for title, rows in found:
        print(f"## {title}\n\n" + "\n".join(rows) + "\n")
    if args.benchmarks:
        text = args.benchmarks.read_text() if args.benchmarks.exists() else "# Benchmarks\n"
        for title, rows in found:
            text = replace_section(text, title, "\n".join(rows))
        args.benchmarks.write_text(text)
        print(f"wrote {args.benchmarks}", file=sys.stderr)


if __name__ == "__main__":
    main()
