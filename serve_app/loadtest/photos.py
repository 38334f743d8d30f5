"""Upload payloads for load tests: real face photos re-encoded like real uploads.

The photos are those that ship in PyPI packages (insightface's `t1.jpg` group photo and
`Tom_Hanks_54745.png`, scikit-image's astronaut) plus `../shared/data/faces/` when present.
Each is resized to a few long sides (640-3000 px) and saved as JPEG within a byte range
(0.3-3 MB by default), raising the quality, then adding a little sensor-like grain, until a
small image is as heavy as a phone upload. Written to a directory the caller owns (a temp
dir): nothing is committed, nothing is cached between runs.
"""

from __future__ import annotations

import importlib.util
import io
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from serve_app.loadtest.sla import PayloadSpec

# (quality, chroma subsampling 2=4:2:0, 0=4:4:4), lightest first.
_QUALITY_LADDER = ((90, 2), (95, 2), (95, 0), (98, 0), (100, 0))
# Grain added (sigma, in levels) when a picture compresses below the byte range: none first.
_GRAIN_SIGMAS = (0.0, 3.0, 6.0, 10.0, 16.0)
_PHONE_BYTES_PER_PIXEL = 0.3


@dataclass(frozen=True)
class SourcePhoto:
    """A photo to build payloads from: `kind` is `face` (one main face) or `group`."""

    name: str
    path: Path | None
    kind: str
    pixels: np.ndarray | None = None  # for photos that ship as arrays (scikit-image)

    def load(self) -> Image.Image:
        if self.pixels is not None:
            return Image.fromarray(self.pixels).convert("RGB")
        assert self.path is not None
        with Image.open(self.path) as image:
            return ImageOps.exif_transpose(image).convert("RGB")


@dataclass(frozen=True)
class Payload:
    """One upload: a JPEG file in the payload directory."""

    name: str  # e.g. "face_recognition/obama/obama.jpg@1600"
    source: str
    kind: str  # face | group
    role: str  # seed: indexed before the load; query: searched and compared with
    file: str
    width: int
    height: int
    bytes: int


@dataclass(frozen=True)
class PayloadSet:
    directory: Path
    payloads: tuple[Payload, ...]

    def of(self, kind: str | None = None, role: str | None = None) -> list[Payload]:
        """Payloads of a kind and/or role."""
        return [
            p
            for p in self.payloads
            if (kind is None or p.kind == kind) and (role is None or p.role == role)
        ]

    def read(self, payload: Payload) -> bytes:
        return (self.directory / payload.file).read_bytes()

    def to_json(self) -> dict:
        return {"directory": str(self.directory), "payloads": [asdict(p) for p in self.payloads]}

    @classmethod
    def from_json(cls, data: dict) -> PayloadSet:
        return cls(Path(data["directory"]), tuple(Payload(**p) for p in data["payloads"]))

    def summary(self) -> str:
        """e.g. `40 photos, 640-3000 px, 0.31-2.9 MB (median 0.9 MB)`."""
        sides = [max(p.width, p.height) for p in self.payloads]
        sizes = sorted(p.bytes for p in self.payloads)
        median = sizes[len(sizes) // 2]
        return (
            f"{len(self.payloads)} JPEG uploads from {len({p.source for p in self.payloads})} "
            f"photos, {min(sides)}-{max(sides)} px, {sizes[0] / 1e6:.2f}-{sizes[-1] / 1e6:.2f} MB "
            f"(median {median / 1e6:.2f} MB)"
        )


def shared_faces_dir() -> Path | None:
    """`../shared/data/faces` beside the repository, when present."""
    repo = Path(__file__).resolve().parents[2]
    candidate = repo.parent / "shared" / "data" / "faces"
    return candidate if candidate.is_dir() else None


def source_photos(faces_dir: Path | None) -> tuple[list[SourcePhoto], list[SourcePhoto]]:
    """(one-face photos, group photos), identities interleaved so any prefix is varied."""
    faces: list[SourcePhoto] = []
    groups: list[SourcePhoto] = []
    spec = importlib.util.find_spec("insightface")
    if spec is not None and spec.origin is not None:
        images = Path(spec.origin).parent / "data" / "images"
        if (images / "t1.jpg").is_file():
            groups.append(SourcePhoto("insightface/t1.jpg", images / "t1.jpg", "group"))
        if (images / "Tom_Hanks_54745.png").is_file():
            faces.append(
                SourcePhoto(
                    "insightface/Tom_Hanks_54745.png", images / "Tom_Hanks_54745.png", "face"
                )
            )
    if importlib.util.find_spec("skimage") is not None:
        from skimage import data

        faces.append(SourcePhoto("skimage/astronaut", None, "face", data.astronaut()))
    if faces_dir is not None:
        people = faces_dir / "people"
        by_identity: list[list[Path]] = []
        for collection in ("face_recognition", "deepface"):
            for identity in sorted((people / collection).glob("*")):
                if identity.is_dir():
                    photos = sorted(
                        p
                        for p in identity.iterdir()
                        if p.suffix.lower() in {".jpg", ".jpeg", ".png"}
                    )
                    if photos:
                        by_identity.append(photos)
        for round_ in range(max((len(p) for p in by_identity), default=0)):
            for photos in by_identity:
                if round_ < len(photos):
                    path = photos[round_]
                    faces.append(SourcePhoto(str(path.relative_to(people)), path, "face"))
        for path in sorted((faces_dir / "groups").glob("*/*.jpg")):
            groups.append(SourcePhoto(f"groups/{path.parent.name}/{path.name}", path, "group"))
    # Real photos of people first: the package photos are small or synthetic-looking.
    faces.sort(key=lambda s: s.name.startswith(("insightface/", "skimage/")))
    return faces, groups


def encode_upload(image: Image.Image, min_bytes: int, max_bytes: int, seed: int) -> bytes:
    """JPEG bytes about as heavy as a phone's photo of this size, within [min, max] bytes.

    Phones write about 0.3 bytes per pixel; small (or upscaled) pictures get a higher quality,
    then a little grain, until they reach `min_bytes`.
    """
    target = min(max(image.width * image.height * _PHONE_BYTES_PER_PIXEL, min_bytes), max_bytes)
    fits = b""  # the heaviest encoding so far that is not over max_bytes
    for sigma in _GRAIN_SIGMAS:
        candidate = _with_grain(image, sigma, seed) if sigma else image
        for quality, subsampling in _QUALITY_LADDER:
            data = _jpeg(candidate, quality, subsampling)
            if len(data) > max_bytes:
                return fits or _shrink(candidate, max_bytes)
            fits = data
            if len(data) >= target:
                return data
    return fits  # as heavy as this picture gets


def build_payloads(spec: PayloadSpec, directory: Path, faces_dir: Path | None) -> PayloadSet:
    """Write the payloads for `spec` into `directory`; returns what was written."""
    directory.mkdir(parents=True, exist_ok=True)
    faces, groups = source_photos(faces_dir)
    chosen = faces[: spec.faces] + groups[: spec.groups]
    if not faces:
        raise FileNotFoundError(
            "no face photos found: install insightface and scikit-image, or provide "
            "../shared/data/faces"
        )
    jobs = []
    for i, source in enumerate(chosen):
        # Two sizes per photo, far apart in the list: the seed and the query differ.
        seed_side = spec.sizes[i % len(spec.sizes)]
        query_side = spec.sizes[(i + 2) % len(spec.sizes)]
        jobs.append((i, source, "seed", seed_side))
        jobs.append((i, source, "query", query_side))
    with ThreadPoolExecutor(max_workers=2) as pool:
        payloads = list(pool.map(lambda job: _render(job, spec, directory), jobs))
    result = PayloadSet(directory, tuple(payloads))
    (directory / "payloads.json").write_text(json.dumps(result.to_json(), indent=1))
    return result


def _render(job: tuple[int, SourcePhoto, str, int], spec: PayloadSpec, directory: Path) -> Payload:
    index, source, role, side = job
    image = source.load()
    scale = side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    resized = image.resize(size, Image.Resampling.LANCZOS)
    data = encode_upload(resized, spec.min_bytes, spec.max_bytes, seed=index)
    file = f"{index:03d}-{role}-{side}.jpg"
    (directory / file).write_bytes(data)
    return Payload(
        name=f"{source.name}@{side}",
        source=source.name,
        kind=source.kind,
        role=role,
        file=file,
        width=size[0],
        height=size[1],
        bytes=len(data),
    )


def _jpeg(image: Image.Image, quality: int, subsampling: int) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality, subsampling=subsampling)
    return out.getvalue()


def _shrink(image: Image.Image, max_bytes: int) -> bytes:
    for quality in range(85, 40, -5):
        data = _jpeg(image, quality, 2)
        if len(data) <= max_bytes:
            return data
    return data


def _with_grain(image: Image.Image, sigma: float, seed: int) -> Image.Image:
    """Add luminance noise like a phone sensor's: upscaled photos compress too well."""
    rng = np.random.default_rng(seed)
    pixels = np.asarray(image, dtype=np.int16)
    noise = rng.normal(0.0, sigma, pixels.shape[:2] + (1,)).astype(np.int16)
    return Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8))
