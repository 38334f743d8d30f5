"""Face detectors of the dlib-r29 pack: dlib's CNN, our ONNX conversion of it, and HOG.

Run alone (`python -m bench.detectors --benchmarks BENCHMARKS.md` replaces its section in
place) or as a section of `make bench`. Times are medians per photo from this one run; recall
is on the 43 annotated faces of the VOC photos in ../shared/data/faces/groups/dlib (a face is
found when a detection overlaps it with IoU >= 0.5).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import dlib
import numpy as np
from PIL import Image

from bench.report import replace_section
from bench.timing import median_ms
from serve_app.config import Settings
from serve_app.vision.image import decode_image
from serve_app.vision.packs.dlib_r29 import (
    MMOD_FILE,
    MMOD_ONNX_FILE,
    DlibR29Pack,
    shipped_model_path,
)
from serve_app.vision.packs.mmod_detector import MmodDetector

REPO = Path(__file__).resolve().parent.parent
FACES = REPO.parent / "shared" / "data" / "faces"
VOC = FACES / "groups" / "dlib"
TITLE = "Face detectors: dlib's CNN, its ONNX conversion, HOG"

Box = tuple[float, float, float, float]  # left, top, right, bottom (exclusive)


def voc_truth() -> dict[str, list[Box]]:
    """The annotated boxes of dlib's example VOC photos (imglab XML), by file name."""
    truth: dict[str, list[Box]] = {}
    for name in ("training.xml", "testing.xml"):
        for image in ET.parse(VOC / name).getroot().iter("image"):
            boxes = truth.setdefault(image.get("file", ""), [])
            for b in image.iter("box"):
                left, top = float(b.get("left", 0)), float(b.get("top", 0))
                boxes.append(
                    (left, top, left + float(b.get("width", 0)), top + float(b.get("height", 0)))
                )
    return truth


def iou(a: Box, b: Box) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def matched(truth: list[Box], found: list[Box]) -> int:
    """Greedy one-to-one matching at IoU >= 0.5, best pairs first."""
    pairs = sorted(
        ((iou(t, f), i, j) for i, t in enumerate(truth) for j, f in enumerate(found)), reverse=True
    )
    used_t, used_f, hits = set(), set(), 0
    for overlap, i, j in pairs:
        if overlap < 0.5:
            break
        if i not in used_t and j not in used_f:
            used_t.add(i)
            used_f.add(j)
            hits += 1
    return hits


def scaled(image: np.ndarray, factor: float) -> np.ndarray:
    h, w = image.shape[:2]
    size = (round(w * factor), round(h * factor))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))


def capped(image: np.ndarray, longest: int) -> np.ndarray:
    factor = longest / max(image.shape[:2])
    return image if factor >= 1 else scaled(image, factor)


def load(path: Path) -> np.ndarray:
    return np.ascontiguousarray(decode_image(path.read_bytes()).pixels)


def bench_detectors(model_dir: Path, repeat: int = 3) -> list[str]:
    if not VOC.is_dir():
        return ["(skipped: ../shared/data/faces not found)"]
    DlibR29Pack.prepare(model_dir)
    settings = Settings.from_env(model_dir=str(model_dir))
    pack = DlibR29Pack(settings)
    onnx = MmodDetector(DlibR29Pack.pack_dir(model_dir) / MMOD_ONNX_FILE, settings.embed_threads)
    reference = dlib.cnn_face_detection_model_v1(str(shipped_model_path(MMOD_FILE)))

    truth = voc_truth()
    voc = {name: load(VOC / name) for name in sorted(truth)}
    # Other group photos: at most 1280 px long (the pack's detect_max_side) for every
    # detector, so dlib's own CNN finishes (~10 s per 1280 px photo).
    others = {
        p.relative_to(FACES / "groups").as_posix(): capped(load(p), settings.detect_max_side)
        for p in sorted((FACES / "groups").glob("*/*.jpg"))
        if p.parent != VOC or p.name == "bald_guys.jpg"
    }
    people = {p: load(p) for p in sorted((FACES / "people").glob("*/*/*.jp*g"))}

    def boxes_dlib(img: np.ndarray, upsample: int = 0) -> list[Box]:
        return [
            (d.rect.left(), d.rect.top(), d.rect.right() + 1, d.rect.bottom() + 1)
            for d in reference(img, upsample)
        ]

    def boxes_onnx(img: np.ndarray, factor: float = 1.0) -> list[Box]:
        small = img if factor == 1.0 else scaled(img, factor)
        return [
            (d.left / factor, d.top / factor, (d.right + 1) / factor, (d.bottom + 1) / factor)
            for d in onnx.detect(small)
        ]

    def boxes_pack(img: np.ndarray, detector: str) -> list[Box]:
        return [
            (f.box.left, f.box.top, f.box.left + f.box.width, f.box.top + f.box.height)
            for f in pack.detect(img, detector=detector)
        ]

    # (name, detector function, time dlib's own CNN too?)
    variants: list[tuple[str, Callable[[np.ndarray], list[Box]]]] = [
        ("dlib CNN (dlib itself), image as given", boxes_dlib),
        ("ONNX CNN, image as given", boxes_onnx),
        ("ONNX CNN, pack size (x2 below 800 px, at most 1280)", lambda i: boxes_pack(i, "cnn")),
        ("HOG, pack size (x2 below 800 px, at most 1280)", lambda i: boxes_pack(i, "hog")),
    ]
    rows = [
        "| detector | VOC faces found (of 43, IoU >= 0.5) | detections on VOC photos "
        "| faces on other group photos (<= 1280 px) | people/ photos with a face "
        "| smallest face found (px) "
        "| ms per VOC photo (500 px) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    per_photo: dict[str, dict[str, int]] = {}
    ms_by: dict[str, float] = {}
    for name, fn in variants:
        print(f"detectors: {name}", file=sys.stderr, flush=True)
        found_voc = {k: fn(img) for k, img in voc.items()}
        hits = sum(matched(truth[k], found_voc[k]) for k in voc)
        detections = sum(len(v) for v in found_voc.values())
        found_other = {k: fn(img) for k, img in others.items()}
        is_dlib = fn is boxes_dlib
        # people/ photos (up to 4500 px) at the pack's detection size only.
        in_pack = "pack size" in name
        people_found = str(sum(1 for img in people.values() if fn(img))) if in_pack else "-"
        sides = [
            min(b[2] - b[0], b[3] - b[1])
            for boxes in (*found_voc.values(), *found_other.values())
            for b in boxes
        ]
        reps = 1 if is_dlib else repeat
        ms = statistics.median(
            median_ms(lambda img=img, fn=fn: fn(img), reps) for img in voc.values()
        )
        ms_by[name] = ms
        per_photo[name] = {k: len(v) for k, v in found_other.items()}
        rows.append(
            f"| {name} | {hits} | {detections} | {sum(per_photo[name].values())} | "
            f"{people_found} / {len(people)} | {min(sides):.0f} | {ms:.0f} |"
        )

    dlib_ms, onnx_ms = ms_by[variants[0][0]], ms_by[variants[1][0]]
    # dlib's CNN runs on one core; so does this session, for a like-for-like ratio.
    single = MmodDetector(DlibR29Pack.pack_dir(model_dir) / MMOD_ONNX_FILE, threads=1)
    one_ms = statistics.median(
        median_ms(lambda img=img: single.detect(img), repeat) for img in voc.values()
    )
    rows += [
        "",
        f"ONNX CNN vs dlib's own on the same photos (as given, median over the {len(voc)} VOC "
        f"photos): {onnx_ms:.0f} ms with {settings.embed_threads} onnxruntime threads "
        f"(**{dlib_ms / onnx_ms:.0f}x faster**), {one_ms:.0f} ms with 1 thread as dlib uses "
        f"(**{dlib_ms / one_ms:.0f}x**), against {dlib_ms:.0f} ms.",
    ]
    # One album-sized photo: insightface's t1.jpg at 1280x886 (dlib: one run, ~10 s).
    import importlib.util

    spec = importlib.util.find_spec("insightface")
    t1 = load(Path(spec.origin).parent / "data" / "images" / "t1.jpg")  # type: ignore[union-attr]
    t1_dlib = median_ms(lambda: reference(t1, 0), 1)
    t1_onnx = median_ms(lambda: onnx.detect(t1), repeat)
    t1_one = median_ms(lambda: single.detect(t1), repeat)
    t1_640 = median_ms(lambda: onnx.detect(scaled(t1, 0.5)), repeat)
    t1_hog = median_ms(lambda: pack.detect(t1, detector="hog"), repeat)
    rows += [
        "",
        f"t1.jpg (1280x886, 6 faces): dlib CNN {t1_dlib:.0f} ms, ONNX CNN {t1_onnx:.0f} ms "
        f"(**{t1_dlib / t1_onnx:.0f}x**; 1 thread {t1_one:.0f} ms, "
        f"**{t1_dlib / t1_one:.0f}x**), ONNX CNN at 640 px {t1_640:.0f} ms "
        f"(**{t1_dlib / t1_640:.0f}x**), pack HOG {t1_hog:.0f} ms (incl. landmarks and chips).",
        "",
        "Faces found per other group photo (same order as the table):",
        "",
        "| photo | " + " | ".join(n for n, _ in variants) + " |",
        "|---|" + "---:|" * len(variants),
    ]
    for photo in others:
        counts = " | ".join(str(per_photo[n][photo]) for n, _ in variants)
        rows.append(f"| {photo} | {counts} |")
    rows += ["", *bench_tilted(pack, people)]
    return rows


def bench_tilted(pack: DlibR29Pack, people: dict[Path, np.ndarray]) -> list[str]:
    """Tilted heads: every third people/ photo (at most 800 px) turned in the image plane."""
    photos = [capped(img, 800) for img in list(people.values())[::3]]
    rows = [
        f"Tilted faces: {len(photos)} people/ photos (every third, at most 800 px) rotated "
        "in the image plane; photos in which the pack finds a face, and ms per photo:",
        "",
        "| rotation | HOG | CNN (ONNX) | HOG ms | CNN ms |",
        "|---:|---:|---:|---:|---:|",
    ]
    for angle in (0, 30, 45):
        turned = [
            np.asarray(Image.fromarray(p).rotate(angle, Image.Resampling.BILINEAR, expand=True))
            for p in photos
        ]
        cells, times = [], []
        for detector in ("hog", "cnn"):
            started = time.perf_counter()
            cells.append(sum(1 for t in turned if pack.detect(t, detector=detector)))
            times.append((time.perf_counter() - started) * 1000 / len(turned))
        rows.append(
            f"| {angle}° | {cells[0]} / {len(turned)} | {cells[1]} / {len(turned)} | "
            f"{times[0]:.0f} | {times[1]:.0f} |"
        )
    return rows


def machine_note() -> str:
    load = os.getloadavg()
    return (
        f"Load average at the end of the run: {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} "
        f"on {os.cpu_count()} cores (other sessions share this machine: times are noisy, "
        "ratios less so)."
    )


def main() -> None:
    from bench.run import machine

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmarks", type=Path, default=REPO / "BENCHMARKS.md")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--pipeline", action="store_true", help="also rewrite the whole-pipeline section"
    )
    args = parser.parse_args()
    settings = Settings.from_env()
    path = args.benchmarks
    if args.pipeline:
        from bench.run import bench_pipeline

        DlibR29Pack.prepare(settings.model_dir)
        rows = bench_pipeline(DlibR29Pack(settings), 20)
        command = " ".join(["python -m bench.detectors", *sys.argv[1:]])
        body = "\n".join([f"- command: `{command}`", f"- {machine_note()}", "", *rows])
        text = path.read_text() if path.exists() else ""
        path.write_text(replace_section(text, "Whole pipeline per image", body))
        print(body)
    rows = bench_detectors(settings.model_dir, args.repeat)
    command = " ".join(["python -m bench.detectors", *sys.argv[1:]])
    body = "\n".join(
        [f"- command: `{command}`", f"- machine: {machine()}", f"- {machine_note()}", "", *rows]
    )
    path.write_text(replace_section(path.read_text() if path.exists() else "", TITLE, body))
    print(body)


if __name__ == "__main__":
    main()
