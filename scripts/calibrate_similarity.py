"""Derive a pack's similarity calibration: the one way a pack's calibration JSON is made.

Measured (a pack we can run):

    nice -n 10 python scripts/calibrate_similarity.py --pack dlib-r29 \
        --root ../shared/data/faces/lfw_view1/images \
        --genuine-pairs ../shared/data/faces/lfw_view1/pairsDevTrain.txt

embeds every image under --root with the pack's own pipeline (cached outside the repository,
see serve_app/evaluation/embeddings.py), scores every pair of images of two different people
(LFW View 1: ~12.4 million), and writes serve_app/vision/packs/calibration/<pack>.json: the
cosine -> false-match-rate curve behind `similarity = 20 * (-log10 FMR) - 20`, and a table of
similarity, FMR promised and measured, and the true-match rate on the genuine pairs.
`--identities-every K` keeps every K-th identity (a short run, as the tests do).

Modelled (a pack whose weights are not available here, e.g. the InsightFace packs):

    python scripts/calibrate_similarity.py --pack buffalo_l --model gaussian:0.0:0.10

writes the curve of impostor cosines ~ N(0.0, 0.10^2), documented in the README as a
literature default until the pack is calibrated on its weights.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT_DIR = REPO / "serve_app" / "vision" / "packs" / "calibration"


def measured(args: argparse.Namespace) -> str:
    """Calibrate from photos; returns the JSON written."""
    from serve_app.evaluation.embeddings import (
        embed_images,
        image_keys,
        lfw_cache_file,
        load_pack_for_evaluation,
    )
    from serve_app.evaluation.fmr import estimate_calibration, genuine_scores, impostor_scores
    from serve_app.evaluation.lfw import parse_pairs

    root = Path(args.root)
    pack = load_pack_for_evaluation(args.pack, calibrated=False)
    keys = image_keys(root)
    if args.identities_every > 1:
        names = sorted({name for name, _ in keys})[:: args.identities_every]
        chosen = set(names)
        keys = [k for k in keys if k[0] in chosen]
    cache = None if args.no_cache else lfw_cache_file(pack, root)
    images = embed_images(pack, root, keys, cache, progress=True)
    impostors = impostor_scores(images)
    pairs = [p for fold in parse_pairs(Path(args.genuine_pairs)) for p in fold]
    genuine = genuine_scores(images, pairs)
    identities = len({name for name, _ in keys})
    subset = f", every {args.identities_every}th identity" if args.identities_every > 1 else ""
    source = (
        f"{root.parent.name}/{root.name}{subset}: {len(keys)} images of {identities} people, "
        f"{len(impostors)} impostor pairs (all pairs of different people; "
        f"{int((~images.detected).sum())} faces not detected, aligned from the centre); "
        f"genuine: {len(genuine)} same-person pairs of {Path(args.genuine_pairs).name}; "
        f"faceserve pipeline {pack.model_version} (embed_flip={pack.settings.embed_flip}); "
        f"scripts/calibrate_similarity.py, {datetime.date.today().isoformat()}"
    )
    return estimate_calibration(impostors, genuine, source).to_json()


def modelled(args: argparse.Namespace) -> str:
    """A documented default from a modelled impostor distribution; returns the JSON."""
    from serve_app.evaluation.fmr import gaussian_calibration

    kind, _, params = args.model.partition(":")
    mean, _, std = params.partition(":")
    if kind != "gaussian" or not mean or not std:
        raise SystemExit("--model must be gaussian:MEAN:STD")
    source = (
        f"literature default, not measured here (the weights cannot be downloaded offline): "
        f"impostor cosines modelled as N({float(mean)}, {float(std)}^2), the spread reported "
        f"for ArcFace-family 512-D embeddings; run scripts/calibrate_similarity.py "
        f"--pack {args.pack} --root ... once the weights are pulled"
    )
    return gaussian_calibration(float(mean), float(std), source).to_json()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pack", default="dlib-r29")
    parser.add_argument("--root", help="folder of NAME/NAME_NNNN.jpg photos (LFW layout)")
    parser.add_argument("--genuine-pairs", help="LFW pairs file whose same pairs give the TMR")
    parser.add_argument("--identities-every", type=int, default=1, metavar="K")
    parser.add_argument("--no-cache", action="store_true", help="embed afresh, cache nothing")
    parser.add_argument("--model", help="gaussian:MEAN:STD instead of photos (see above)")
    parser.add_argument("--output-dir", type=Path, default=OUT_DIR)
    args = parser.parse_args(argv)
    if args.model:
        text = modelled(args)
    elif args.root and args.genuine_pairs:
        text = measured(args)
    else:
        parser.error("give --root and --genuine-pairs (measured) or --model (modelled)")
    out = args.output_dir / f"{args.pack}.json"
    out.write_text(text)
    print(f"wrote {out}", file=sys.stderr)
    print(text)


if __name__ == "__main__":
    main()
