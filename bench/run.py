"""`make bench`: speed and accuracy of the default pack against dlib's own pipeline.

Writes a Markdown report (BENCHMARKS.md) with the machine, the command, medians and
ratios measured in this one run. Absolute times vary between machines; ratios travel.
"""

from __future__ import annotations

import argparse
import datetime
import io
import os
import platform
import sys
from pathlib import Path

import dlib
import numpy as np
import onnxruntime as ort
from PIL import Image

from bench.timing import median_ms
from serve_app.config import Settings
from serve_app.evaluation.lfw import evaluate, parse_pairs
from serve_app.evaluation.pipelines import dlib_pipeline, pack_pipeline
from serve_app.loadtest.report import load_test_sections
from serve_app.vision.image import decode_image
from serve_app.vision.packs.dlib_r29 import RESNET_FILE, DlibR29Pack, shipped_model_path
from serve_app.vision.packs.onnx_embedder import OnnxEmbedder

REPO = Path(__file__).resolve().parent.parent
FACES = REPO.parent / "shared" / "data" / "faces"


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
        f"onnxruntime {ort.__version__}, dlib {dlib.__version__}, {platform.system()} "
        f"{platform.machine()}"
    )


def t1_photo() -> np.ndarray:
    import importlib.util

    spec = importlib.util.find_spec("insightface")
    path = Path(spec.origin).parent / "data" / "images" / "t1.jpg"  # type: ignore[union-attr]
    return decode_image(path.read_bytes()).pixels


def resized(image: np.ndarray, longest: int) -> np.ndarray:
    h, w = image.shape[:2]
    scale = longest / max(h, w)
    size = (round(w * scale), round(h * scale))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))


def bench_detection(pack: DlibR29Pack, repeat: int) -> list[str]:
    photo = t1_photo()
    rows = ["| image | faces found | detect + landmarks + chips, median ms |", "|---|---:|---:|"]
    for longest in (640, 1280):
        image = resized(photo, longest)
        faces = len(pack.detect(image))
        ms = median_ms(lambda image=image: pack.detect(image), repeat)
        rows.append(
            f"| t1.jpg at {longest} px ({image.shape[1]}x{image.shape[0]}) | {faces} | {ms:.1f} |"
        )
    return rows


def bench_embedding(pack: DlibR29Pack, model_dir: Path, repeat: int) -> list[str]:
    chips = np.stack([f.chip for f in pack.detect(t1_photo())])
    model = DlibR29Pack.onnx_path(model_dir)
    plain = OnnxEmbedder(model, threads=2, flip=False)
    mirrored = OnnxEmbedder(model, threads=2, flip=True)
    resnet = dlib.face_recognition_model_v1(str(shipped_model_path(RESNET_FILE)))
    rows = [
        "| batch | ONNX ms/face | ONNX + mirror ms/face | dlib ms/face | dlib / ONNX |",
        "|---:|---:|---:|---:|---:|",
    ]
    for batch in (1, 8, 32):
        x = np.ascontiguousarray(np.resize(chips, (batch, *chips.shape[1:])))
        chip_list = list(x)
        onnx_ms = median_ms(lambda x=x: plain.raw(x), repeat) / batch
        flip_ms = median_ms(lambda x=x: mirrored.embed(x), repeat) / batch
        dlib_repeat = max(3, repeat // 4)
        dlib_ms = median_ms(lambda c=chip_list: resnet.compute_face_descriptor(c), dlib_repeat)
        dlib_ms /= batch
        ratio = dlib_ms / onnx_ms
        rows.append(f"| {batch} | {onnx_ms:.2f} | {flip_ms:.2f} | {dlib_ms:.1f} | {ratio:.0f}x |")
    return rows


def bench_pipeline(pack: DlibR29Pack, repeat: int) -> list[str]:
    """In-process cost per photo: full decode + detect (as before the reduced decode), the
    service's detect_faces (large JPEGs decoded at the size detection needs), and the same
    for a search query (largest face only: a cheap pass first)."""
    from serve_app.service.analysis import detect_faces

    small = sorted((FACES / "people" / "face_recognition").glob("*/*.jp*g"))[:12]
    if not small:
        return ["(skipped: ../shared/data/faces not found)"]
    large = [
        p
        for p in sorted((FACES / "people").glob("*/*/*.jp*g"))
        if max(Image.open(p).size) >= 2 * pack.settings.detect_max_side
    ]

    def full(blob: bytes) -> None:
        pack.embed(pack.detect(decode_image(blob).pixels))

    def service(blob: bytes) -> None:
        pack.embed(detect_faces(pack, blob).faces)

    def query(blob: bytes) -> None:
        pack.embed(detect_faces(pack, blob, largest_only=True).faces)

    runs = max(3, repeat // 4)
    rows = [
        "| photos | full decode + detect + align + embed | detect_faces (reduced JPEG decode) "
        "| search query (largest face only) |",
        "|---|---:|---:|---:|",
    ]
    for label, photos in (
        (f"{len(small)} photos from people/face_recognition (240p-1080p)", small),
        (f"{len(large)} photos from people/ at least 2560 px long (phone-sized)", large),
    ):
        data = [p.read_bytes() for p in photos]
        cells = []
        for fn in (full, service, query):
            ms = median_ms(lambda fn=fn, data=data: [fn(b) for b in data], runs) / len(data)
            cells.append(f"{ms:.1f}")
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    rows += [
        "",
        f"ms per image, mean over the photos, median of {runs} runs; detection (HOG, the "
        "default) on a copy at most 1280 px long, embeddings with the mirror image. The first "
        "column is the path before reduced JPEG decoding (the pipeline as it was); the reduced "
        "decode applies only to JPEGs at least 2560 px long, so the first row's columns differ "
        "by noise and the query's cheaper first pass.",
    ]
    return rows


def bench_lfw(settings: Settings, pack: DlibR29Pack, limit: int | None) -> list[str]:
    root = FACES / "lfw_view1"
    if not root.is_dir():
        return ["(skipped: ../shared/data/faces/lfw_view1 not found)"]
    test = parse_pairs(root / "pairsDevTest.txt")
    train = parse_pairs(root / "pairsDevTrain.txt")
    if limit:
        test = [
            [p for p in f if p.same][:limit] + [p for p in f if not p.same][:limit] for f in test
        ]
        train = [
            [p for p in f if p.same][:limit] + [p for p in f if not p.same][:limit] for f in train
        ]
    rows = [
        "| pipeline | accuracy (DevTest) | ROC AUC | TAR @ FAR=1e-3 | no face detected "
        "| median ms/image |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    results = []
    for pipeline in (pack_pipeline(pack), dlib_pipeline()):
        print(f"LFW: {pipeline.name}", file=sys.stderr, flush=True)
        r = evaluate(pipeline, root / "images", test, train)
        results.append(r)
        rows.append(
            f"| {r.pipeline} | {100 * r.accuracy:.2f}% | {r.roc_auc:.4f} | "
            f"{100 * r.tar_at_far_1e3:.1f}% | {r.no_face_detected} / {r.images} | "
            f"{r.median_ms_per_image:.1f} |"
        )
    ratio = results[1].median_ms_per_image / results[0].median_ms_per_image
    rows.append("")
    rows.append(
        f"Threshold chosen on DevTrain ({sum(len(f) for f in train)} pairs), accuracy on DevTest "
        f"({results[0].pairs} pairs). Per image, faceserve is {ratio:.1f}x faster than dlib's "
        "pipeline (both include HOG detection, which dominates). No face detected: "
        f"{results[0].no_face_policy}."
    )
    return rows


def bench_serving(model_dir: Path) -> list[str]:
    from bench.http import bench_http

    people = FACES / "people"
    photos = [p.read_bytes() for p in sorted(people.glob("face_recognition/*/*"))]
    photos += [p.read_bytes() for p in sorted(people.glob("deepface/*/*"))[:20]]
    if not photos:
        return ["(skipped: ../shared/data/faces not found)"]
    query = (people / "face_recognition" / "obama" / "obama2.jpg").read_bytes()
    header = [
        f"{len(photos)} photos from people/ (240p-1080p, 1-2 faces each) indexed into one "
        "collection, then searched with another photo; serve_config.yaml as committed, "
        "clients on the same 2 cores.",
        "",
    ]
    return header + bench_http(photos, query, model_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=REPO / "BENCHMARKS.md")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--lfw-limit", type=int, help="at most N same + N different pairs")
    parser.add_argument("--skip-lfw", action="store_true")
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--skip-detectors", action="store_true", help="dlib's CNN takes minutes")
    parser.add_argument(
        "--vector-sizes",
        default="10000,100000,1000000",
        help="comma-separated collection sizes for the vector search benchmark ('' to skip)",
    )
    args = parser.parse_args()

    settings = Settings.from_env()
    DlibR29Pack.prepare(settings.model_dir)
    pack = DlibR29Pack(settings)
    command = "make bench  (" + " ".join(["python -m bench.run", *sys.argv[1:]]) + ")"
    out = io.StringIO()
    w = lambda line="": out.write(line + "\n")  # noqa: E731
    w("# Benchmarks")
    w()
    w(f"- command: `{command}`")
    w(f"- date: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}")
    w(f"- machine: {machine()}")
    w(f"- pack: {pack.model_version}, onnxruntime threads {settings.embed_threads}")
    w()
    sections = [
        (
            "Detection (dlib HOG, 5-point landmarks, aligned chips)",
            # Detection is timed on the image as given: no downscaling to detect_max_side.
            bench_detection(DlibR29Pack(Settings.from_env(detect_max_side=4096)), args.repeat),
        ),
        (
            "Embedding per face: our ONNX conversion vs dlib itself",
            bench_embedding(pack, settings.model_dir, args.repeat),
        ),
        ("Whole pipeline per image", bench_pipeline(pack, args.repeat)),
    ]
    if not args.skip_detectors:
        from bench.detectors import TITLE, bench_detectors

        sections.append((TITLE, bench_detectors(settings.model_dir)))
    if not args.skip_lfw:
        sections.append(
            (
                "Accuracy: LFW View 1 against dlib's own pipeline",
                bench_lfw(settings, pack, args.lfw_limit),
            )
        )
        from bench.openset import sections as similarity_sections

        # The full calibration run and open-set search (embeddings cached outside the repo).
        sections += similarity_sections()
    if not args.skip_http:
        sections.append(("Serving over HTTP (Ray Serve graph)", bench_serving(settings.model_dir)))
    if args.vector_sizes:
        from bench.vectors import bench_vectors

        sizes = [int(x) for x in args.vector_sizes.split(",")]
        sections.append(("Vector search at scale", bench_vectors(sizes)))
    for title, rows in sections:
        print(f"{title} …", file=sys.stderr, flush=True)
        w(f"## {title}")
        w()
        for row in rows:
            w(row)
        w()
    # The load-test sections (`faceserve loadtest --benchmarks`) are written by their own
    # runs: carry them over unchanged.
    previous = args.output.read_text() if args.output.exists() else ""
    carried = load_test_sections(previous)
    args.output.write_text(out.getvalue() + ("\n" + carried if carried else ""))
    print(out.getvalue())


if __name__ == "__main__":
    main()
