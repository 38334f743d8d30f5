"""Upload payloads: real photos at real-upload sizes, built fresh for each run."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

from PIL import Image

from serve_app.loadtest.photos import (
    build_payloads,
    encode_upload,
    shared_faces_dir,
    source_photos,
)
from serve_app.loadtest.sla import PayloadSpec


def test_payloads_are_jpegs_of_the_requested_sizes() -> None:
    spec = PayloadSpec(faces=3, groups=1, sizes=(640, 1600, 3000))
    # Without ../shared/data/faces only the package photos are there (2 faces, 1 group).
    faces, groups = source_photos(shared_faces_dir())
    chosen = min(spec.faces, len(faces)) + min(spec.groups, len(groups))
    with tempfile.TemporaryDirectory() as directory:
        payloads = build_payloads(spec, Path(directory), shared_faces_dir())
        assert len(payloads.of(role="seed")) == len(payloads.of(role="query")) == chosen
        assert payloads.of(kind="group")
        for p in payloads.payloads:
            data = payloads.read(p)
            with Image.open(io.BytesIO(data)) as image:
                assert image.format == "JPEG" and image.size == (p.width, p.height)
            assert max(p.width, p.height) in spec.sizes
            assert len(data) == p.bytes <= spec.max_bytes
        # The seed and the query of one photo are different uploads (another size).
        for seed in payloads.of(role="seed"):
            (query,) = [q for q in payloads.of(role="query") if q.source == seed.source]
            assert (query.width, query.height) != (seed.width, seed.height)


def test_uploads_weigh_like_phone_photos() -> None:
    flat = Image.new("RGB", (640, 480), (120, 130, 140))  # compresses to almost nothing
    assert len(encode_upload(flat, 100_000, 3_000_000, seed=1)) >= 100_000
    big = Image.effect_noise((3000, 2000), 60).convert("RGB")  # incompressible
    data = encode_upload(big, 300_000, 3_000_000, seed=1)
    assert 1_000_000 < len(data) <= 3_000_000
