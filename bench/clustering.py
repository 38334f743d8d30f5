"""Clustering faces into persons: quality on LFW View 1, time and memory at scale.

    nice -n 10 python -m bench.clustering --benchmarks BENCHMARKS.md

Quality: every image of LFW View 1 (the identities with >= 2 images, and the singletons as
distractors), embedded by the default pack (cached, `serve_app/evaluation/embeddings.py`),
clustered by our constrained average linkage (`serve_app/service/linkage.py`) and, on the
same embeddings in the same run, by dlib's `chinese_whispers_clustering(..., 0.5)` and
scikit-learn's DBSCAN (its best eps of a sweep). Scored as BCubed precision, recall and F
(per face, then averaged) and pairwise F; a face left alone is its own cluster.

Scale: synthetic face-like vectors (identities of 2-20 faces, 128-D, cosine to their
identity's centre ~0.93) at 10k and 100k faces; each size in its own process, for its peak
memory.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

from serve_app.evaluation.embeddings import (
    embed_images,
    image_keys,
    lfw_cache_file,
    load_pack_for_evaluation,
)
from serve_app.service import clustering as service
from serve_app.service.linkage import EXACT_UP_TO, cluster_faces

REPO = Path(__file__).resolve().parent.parent
LFW = REPO.parent / "shared" / "data" / "faces" / "lfw_view1"
SECTION = "## Clustering faces into persons"
SWEEP = (55.0, 60.0, 65.0, 70.0, 75.0, 80.0)
SIZES = (10_000, 100_000, 1_000_000)
SIZE_TIMEOUT_S = 900


def bcubed(labels: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    """BCubed precision, recall, F of cluster `labels` against `truth` (one per item)."""
    _, labels = np.unique(labels, return_inverse=True)
    _, truth = np.unique(truth, return_inverse=True)
    pair = labels.astype(np.int64) * (truth.max() + 1) + truth
    _, inverse, both = np.unique(pair, return_inverse=True, return_counts=True)
    overlap = both[inverse]
    precision = float(np.mean(overlap / np.bincount(labels)[labels]))
    recall = float(np.mean(overlap / np.bincount(truth)[truth]))
    return precision, recall, 2 * precision * recall / (precision + recall)


def pairwise_f(labels: np.ndarray, truth: np.ndarray) -> float:
    """F of the same-cluster face pairs against the same-identity pairs."""
    _, labels = np.unique(labels, return_inverse=True)
    _, truth = np.unique(truth, return_inverse=True)

    def pairs(counts: np.ndarray) -> float:
        return float(np.sum(counts * (counts - 1) / 2))

    _, both = np.unique(labels.astype(np.int64) * (truth.max() + 1) + truth, return_counts=True)
    tp = pairs(both)
    precision = tp / max(pairs(np.bincount(labels)), 1)
    recall = tp / max(pairs(np.bincount(truth)), 1)
    return 0.0 if tp == 0 else 2 * precision * recall / (precision + recall)


def ours(vectors: np.ndarray, cosine: float) -> np.ndarray:
    return cluster_faces(vectors, np.arange(len(vectors)), cosine).labels


def dlib_scale(root: Path, keys: list[tuple[str, int]], sample: int = 24) -> float:
    """The median length of dlib's own descriptors (compute_face_descriptor, unnormalised):
    its 0.5 / 0.6 thresholds are distances at that scale, our vectors are unit length."""
    from serve_app.evaluation.lfw import image_path
    from serve_app.evaluation.pipelines import dlib_pipeline

    pipeline = dlib_pipeline()
    step = max(1, len(keys) // sample)
    norms = [np.linalg.norm(pipeline.embed(image_path(root, k)).vector) for k in keys[::step]]
    return float(np.median(norms))


def chinese_whispers(vectors: np.ndarray, threshold: float) -> np.ndarray:
    import dlib

    descriptors = [dlib.vector(v.astype(float).tolist()) for v in vectors]
    return np.array(dlib.chinese_whispers_clustering(descriptors, threshold))


def dbscan(vectors: np.ndarray, eps: float) -> np.ndarray:
    from sklearn.cluster import DBSCAN

    labels = DBSCAN(eps=eps, min_samples=2, metric="euclidean").fit_predict(vectors)
    noise = labels < 0  # noise: each face its own cluster
    labels[noise] = labels.max() + 1 + np.arange(noise.sum())
    return labels


def quality_rows(pack_name: str) -> tuple[list[str], dict[str, float]]:
    pack = load_pack_for_evaluation(pack_name)
    root = LFW / "images"
    keys = image_keys(root)
    images = embed_images(pack, root, keys, cache=lfw_cache_file(pack, root), progress=True)
    vectors, truth = images.vectors, images.identities
    counts = {name: n for name, n in zip(*np.unique(truth, return_counts=True), strict=True)}
    multi = sum(1 for n in counts.values() if n >= 2)
    header = (
        f"{len(vectors)} images: {multi} identities with >= 2 images "
        f"({sum(n for n in counts.values() if n >= 2)} images) and "
        f"{sum(1 for n in counts.values() if n == 1)} singletons; "
        f"{int(images.detected.sum())} faces detected, the rest embedded from the centre box."
    )
    rows = [
        header,
        "",
        "| method | setting | BCubed P | BCubed R | BCubed F | pairwise F | clusters | time |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    calibration = pack.calibration

    def row(method: str, setting: str, run) -> tuple[float, float, float]:
        started = time.perf_counter()
        labels = run()
        elapsed = time.perf_counter() - started
        p, r, f = bcubed(labels, truth)
        rows.append(
            f"| {method} | {setting} | {p:.4f} | {r:.4f} | {f:.4f} | "
            f"{pairwise_f(labels, truth):.4f} | {len(np.unique(labels))} | {elapsed:.2f} s |"
        )
        print(rows[-1], file=sys.stderr)
        return p, r, f

    default = service.DEFAULT_THRESHOLD
    found: dict[str, float] = {}
    for similarity in sorted({*SWEEP, default}):
        cosine = calibration.cosine_at(similarity)
        mark = " (default)" if similarity == default else ""
        p, r, f = row(
            "ours: average linkage + cannot-link",
            f"similarity {similarity:g}{mark} (cosine {cosine:.3f})",
            lambda cosine=cosine: ours(vectors, cosine),
        )
        if similarity == default:
            found |= {"ours_p": p, "ours_r": r, "ours_f": f}
    scale = dlib_scale(root, keys)
    scaled = vectors * scale  # dlib's own descriptor lengths
    _, _, f = row(
        "dlib chinese_whispers",
        f"0.5 (dlib's), on the vectors at dlib's length ({scale:.3f})",
        lambda: chinese_whispers(scaled, 0.5),
    )
    found["cw_f"] = f
    sweep = [(t, bcubed(chinese_whispers(scaled, t), truth)[2]) for t in (0.4, 0.45, 0.55, 0.6)]
    best_cw = max(sweep, key=lambda item: item[1])
    row(
        "dlib chinese_whispers",
        f"{best_cw[0]} (best of 0.4-0.6, same length)",
        lambda: chinese_whispers(scaled, best_cw[0]),
    )
    eps_sweep = [
        (e, bcubed(dbscan(vectors, e), truth)[2]) for e in (0.25, 0.3, 0.35, 0.4, 0.45, 0.5)
    ]
    best_eps = max(eps_sweep, key=lambda item: item[1])[0]
    _, _, f = row(
        "scikit-learn DBSCAN",
        f"eps {best_eps} (best of 0.25-0.5), min_samples 2",
        lambda: dbscan(vectors, best_eps),
    )
    found["dbscan_f"] = f
    return rows, found


def synthetic(n: int, dim: int = 128, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Face-like unit vectors: identities of 2-20 faces, each face near its identity."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(2, 21, size=n)  # more than enough identities
    truth = np.repeat(np.arange(len(sizes)), sizes)[:n]
    centres = rng.standard_normal((truth.max() + 1, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    noise = rng.standard_normal((n, dim)).astype(np.float32) * 0.018
    vectors = centres[truth] + noise
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors, truth


def scale_child(n: int, cosine: float) -> None:
    vectors, truth = synthetic(n)
    tracemalloc.start()  # numpy's buffers are traced too
    started = time.perf_counter()
    labels = cluster_faces(vectors, np.arange(n), cosine).labels
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    p, r, f = bcubed(labels, truth)
    print(json.dumps({"n": n, "s": elapsed, "mb": peak / 2**20, "rss": rss, "f": f, "p": p}))


def scale_rows(cosine: float) -> list[str]:
    rows = [
        "| faces | graph | time | peak memory allocated while clustering | process peak RSS "
        "| BCubed F (synthetic) |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for n in SIZES:
        graph = "exact" if n <= EXACT_UP_TO else "partitioned"
        try:
            out = subprocess.run(
                [sys.executable, "-m", "bench.clustering", "--scale-child", str(n), str(cosine)],
                capture_output=True,
                text=True,
                check=True,
                cwd=REPO,
                timeout=SIZE_TIMEOUT_S,
            ).stdout
        except (subprocess.TimeoutExpired, subprocess.CalledProcessError) as exc:
            why = "timed out" if isinstance(exc, subprocess.TimeoutExpired) else "failed"
            rows.append(f"| {n:,} | {graph} | {why} after {SIZE_TIMEOUT_S} s at most | | | |")
            continue
        got = json.loads(out.strip().splitlines()[-1])
        rows.append(
            f"| {n:,} | {graph} | {got['s']:.1f} s | {got['mb']:.0f} MB | {got['rss']:.0f} MB "
            f"| {got['f']:.4f} |"
        )
        print(rows[-1], file=sys.stderr)
    return rows


def write_section(path: Path, body: str) -> None:
    text = path.read_text() if path.exists() else ""
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    section = f"{SECTION}\n\n{body}\n\n"
    text = pattern.sub(section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    path.write_text(text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmarks", type=Path, help="write the section into this file")
    parser.add_argument("--pack", default="dlib-r29")
    parser.add_argument("--scale-child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--no-scale", action="store_true")
    args = parser.parse_args(argv)
    if args.scale_child:
        scale_child(int(args.scale_child[0]), float(args.scale_child[1]))
        return
    rows, found = quality_rows(args.pack)
    pack = load_pack_for_evaluation(args.pack)
    cosine = pack.calibration.cosine_at(service.DEFAULT_THRESHOLD)
    scale = [] if args.no_scale else scale_rows(cosine)
    load = os.getloadavg()
    body = "\n".join(
        [
            f"Measured {datetime.date.today()} on {os.cpu_count()} cores, "
            f"{platform.machine()}, pack `{args.pack}`; load average at the end "
            f"{load[0]:.1f} (other engineers' work shared the CPU).",
            "",
            "    nice -n 10 python -m bench.clustering --benchmarks BENCHMARKS.md",
            "",
            "Quality on LFW View 1 (one run, same embeddings for every method):",
            "",
            *rows,
            "",
            f"Default (similarity {service.DEFAULT_THRESHOLD:g}): BCubed P {found['ours_p']:.4f}, "
            f"F {found['ours_f']:.4f}, against chinese_whispers(0.5) {found['cw_f']:.4f} and "
            f"DBSCAN {found['dbscan_f']:.4f}.",
            *(
                [
                    "",
                    "Time and memory (synthetic vectors, default threshold, 2 cores; each size "
                    "in its own process):",
                    "",
                    *scale,
                    "",
                    "The algorithm alone (no database). The partitioned graph grows about "
                    "linearly (cells of ~512 faces, 3 probes each); the merge loop is pure "
                    "Python over a few edges a face. For a real 1M-face collection the "
                    "snapshot (512 MB of 128-D vectors through the Search deployment) and one "
                    "transaction writing every face are the limits: run it as a Ray job "
                    "(issue 11's job kind) rather than in the ingress. At 1M the memory is the "
                    "merge loop's Python structures (a dict, two sets and a list for every "
                    "face's starting group), not the graph: a run that size would want the "
                    "merge in compiled code (or the collection clustered in parts).",
                ]
                if scale
                else []
            ),
        ]
    )
    print(body)
    if args.benchmarks:
        write_section(args.benchmarks, body)


if __name__ == "__main__":
    main()
