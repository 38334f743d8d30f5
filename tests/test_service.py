"""The service layer in-process (no Ray, no HTTP): indexing rules and what gets stored."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from serve_app.errors import InvalidParameter
from serve_app.service.ports import LocalPipeline, LocalStorage
from serve_app.service.quality_filter import Reason
from serve_app.service.services import Services
from serve_app.store import EmbeddedPostgres, Store
from serve_app.store.photo_cipher import PhotoCipher
from serve_app.vision.packs.dlib_r29 import DlibR29Pack


@pytest.fixture(scope="module")
def store(postgres: EmbeddedPostgres) -> Iterator[Store]:
    # A database of its own on the shared server: these tests see only their collections.
    opened = Store.open(postgres.fresh_database("service_tests"))
    yield opened
    opened.close()


PHOTO_KEY = bytes(32)


def _service(store: Store, pack: DlibR29Pack, store_images: bool) -> Services:
    pipelines = {pack.name: LocalPipeline(pack)}
    key = PHOTO_KEY if store_images else None
    return Services.build(
        LocalStorage(store), pipelines, pack.name, store_images=store_images, photo_key=key
    )


def _stored_photos(store: Store, collection: str) -> list[bytes | None]:
    schema = store.get_collection(collection).schema_name
    with store.engine.connect() as conn:
        rows = conn.execute(text(f'SELECT data FROM "{schema}".images')).all()
    return [None if row.data is None else bytes(row.data) for row in rows]


@pytest.mark.parametrize("store_images", [False, True])
def test_photos_are_kept_only_when_asked(
    store: Store, pack: DlibR29Pack, t1_bytes: bytes, store_images: bool
) -> None:
    service = _service(store, pack, store_images)
    name = f"photos-{store_images}".lower()

    async def run() -> None:
        await service.faces.create_collection(name)
        result = await service.faces.index_faces(name, t1_bytes, external_image_id="t1")
        assert len(result.indexed) == 6

    asyncio.run(run())
    # Kept sealed (AES-GCM): only the key opens them.
    photos = _stored_photos(store, name)
    opened = [None if p is None else PhotoCipher(PHOTO_KEY).open(p) for p in photos]
    assert opened == [t1_bytes if store_images else None]
    assert t1_bytes not in photos


def test_max_faces_keeps_the_largest_and_reports_the_rest(
    store: Store, pack: DlibR29Pack, t1_bytes: bytes
) -> None:
    service = _service(store, pack, False)

    async def run() -> None:
        await service.faces.create_collection("max-faces")
        result = await service.faces.index_faces("max-faces", t1_bytes, max_faces=2)
        areas = [f.bounding_box["width"] * f.bounding_box["height"] for f in result.indexed]
        skipped = [u.face.box.area for u in result.unindexed]
        assert len(areas) == 2 and len(skipped) == 4
        assert min(areas) >= max(skipped)
        assert all(u.reasons == [Reason.EXCEEDS_MAX_FACES] for u in result.unindexed)
        # HIGH demands large, sharp, frontal faces: t1's small group faces do not pass.
        strict = await service.faces.index_faces("max-faces", t1_bytes, quality_filter="HIGH")
        assert len(strict.indexed) < 6 and all(u.reasons for u in strict.unindexed)
        with pytest.raises(InvalidParameter, match="quality_filter"):
            await service.faces.index_faces("max-faces", t1_bytes, quality_filter="BEST")
        with pytest.raises(InvalidParameter, match="max_faces"):
            await service.faces.index_faces("max-faces", t1_bytes, max_faces=0)
        with pytest.raises(InvalidParameter, match="threshold"):
            await service.faces.search_by_image("max-faces", t1_bytes, threshold="high")  # type: ignore[arg-type]

    asyncio.run(run())


def test_quality_filter_on_compare_drops_faces_before_comparing(
    store: Store, pack: DlibR29Pack, t1_bytes: bytes
) -> None:
    service = _service(store, pack, False)

    async def run() -> None:
        everyone = await service.faces.compare(t1_bytes, t1_bytes)
        strict = await service.faces.compare(t1_bytes, t1_bytes, quality_filter="HIGH")
        assert len(everyone.matches) + len(everyone.unmatched) == 6
        assert 1 <= len(strict.matches) + len(strict.unmatched) < 6

    asyncio.run(run())
