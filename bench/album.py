"""Compose a realistic photo album from LFW faces, for the album-job benchmark and tests.

Each photo is a 1-3 megapixel JPEG: a smooth, textured background with 1-6 LFW photos
(deep-funneled 250 x 250, the face in the middle) scaled so the faces are 90-260 px tall, as
in group shots and portraits of a real album. The album is written outside the repository
(the faces are evaluation data, never ours to commit), in a deterministic order and content.

    python -m bench.album OUT_DIR --count 10000 [--seed 0]
"""

from __future__ import annotations

import argparse
import io
import random
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

LFW_IMAGES = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "faces" / "lfw_view1" / "images"
)
# Canvas sizes (w, h): 1.1 to 3.0 megapixels, landscape and portrait.
SIZES = ((1280, 960), (1600, 1200), (2000, 1500), (1200, 1600), (1920, 1080))


def lfw_photos(root: Path = LFW_IMAGES) -> list[Path]:
    """Every LFW image, in a fixed order."""
    return sorted(root.glob("*/*.jpg"))


def _background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    small = rng.integers(40, 220, size=(height // 64 + 2, width // 64 + 2, 3), dtype=np.uint8)
    base = Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC)
    grain = rng.normal(0, 9, size=(height, width, 1)).astype(np.int16)
    pixels = np.clip(np.asarray(base, dtype=np.int16) + grain, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(0.8))


_BACKGROUNDS: dict[tuple[int, int, int], Image.Image] = {}
BACKGROUND_VARIANTS = 24  # per size: generating one costs more than the rest of a photo


def _cached_background(seed: int, variant: int, width: int, height: int) -> Image.Image:
    key = (variant, width, height)
    if key not in _BACKGROUNDS:
        rng = np.random.default_rng([seed, variant, width, height])
        _BACKGROUNDS[key] = _background(rng, width, height)
    return _BACKGROUNDS[key].copy()


def compose(index: int, photos: list[Path], seed: int = 0) -> tuple[bytes, int]:
    """Photo number `index` of the album: its JPEG bytes and the number of faces placed."""
    rnd = random.Random(seed * 1_000_003 + index)
    width, height = rnd.choice(SIZES)
    canvas = _cached_background(seed, rnd.randrange(BACKGROUND_VARIANTS), width, height)
    count = rnd.choice((1, 1, 2, 2, 3, 3, 4, 5, 6))
    placed: list[tuple[int, int, int]] = []
    for _ in range(count * 8):  # placements that would overlap are retried
        if len(placed) == count:
            break
        side = rnd.randint(200, 560)  # the 250 px LFW photo; its face is about half of it
        x, y = rnd.randint(0, width - side), rnd.randint(0, height - side)
        if any(
            abs(x - px) < (side + ps) // 2 + 20 and abs(y - py) < (side + ps) // 2 + 20
            for px, py, ps in placed
        ):
            continue
        face = (
            Image.open(rnd.choice(photos))
            .convert("RGB")
            .resize((side, side), Image.Resampling.BILINEAR)
        )
        canvas.paste(face, (x, y))
        placed.append((x, y, side))
    out = io.BytesIO()
    canvas.save(out, "JPEG", quality=88)
    return out.getvalue(), len(placed)


def _write(args: tuple[Path, int, int, list[Path]]) -> None:
    out_dir, index, seed, photos = args
    path = out_dir / f"{index // 1000:02d}" / f"photo_{index:05d}.jpg"
    if path.exists():
        return
    data, _ = compose(index, photos, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    tmp.write_bytes(data)
    tmp.rename(path)


def write_album(out_dir: Path, count: int, seed: int = 0, workers: int = 2) -> list[Path]:
    """Write (or complete) an album of `count` photos under `out_dir`; returns their paths."""
    photos = lfw_photos()
    if not photos:
        raise SystemExit(f"no LFW photos under {LFW_IMAGES}")
    jobs = [(out_dir, i, seed, photos) for i in range(count)]
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_write, jobs, chunksize=256))
    return sorted(out_dir.glob("*/*.jpg"))[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    paths = write_album(args.out_dir, args.count, args.seed)
    print(f"{len(paths)} photos in {args.out_dir}")


if __name__ == "__main__":
    main()
