"""What every service shares: the storage port, the loaded pipelines, and how a calibrated
threshold becomes a bound on cosine similarity and back.

The composition root (`serve_app.service.services.Services`) builds one context and hands
it to each service, so no service reaches into another.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from serve_app.errors import InvalidParameter, ModelNotAvailable
from serve_app.service.ports import Pipeline, Storage
from serve_app.store.photo_cipher import PhotoCipher
from serve_app.store.records import CollectionRecord


@dataclass(frozen=True)
class CollectionContext:
    """`pipelines` maps pack name -> Pipeline (the packs this service runs)."""

    storage: Storage
    pipelines: dict[str, Pipeline]
    default_pack: str
    store_images: bool = False
    # Seals stored photos (AES-GCM); photos are never stored in the clear.
    photo_cipher: PhotoCipher | None = None
    _by_version: dict[str, Pipeline] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.store_images and self.photo_cipher is None:
            raise InvalidParameter(
                "storing photos needs a photo key (FACESERVE_IMAGE_KEY or FACESERVE_IMAGE_KEY_FILE)"
            )
        if self.default_pack not in self.pipelines:
            raise ValueError(f"default pack {self.default_pack} has no pipeline")
        by_version = {p.model_version: p for p in self.pipelines.values()}
        object.__setattr__(self, "_by_version", by_version)

    @property
    def default_pipeline(self) -> Pipeline:
        return self.pipelines[self.default_pack]

    def pipeline_for(self, collection: CollectionRecord) -> Pipeline:
        """The pipeline of the pack a collection is pinned to; ModelNotAvailable if not run."""
        pipeline = self._by_version.get(collection.model_version)
        if pipeline is None:
            loaded = ", ".join(self._by_version)
            raise ModelNotAvailable(
                f"collection {collection.name!r} uses model {collection.model_version}, "
                f"which this service does not run (it runs {loaded})"
            )
        return pipeline

    async def collection(self, name: str) -> tuple[CollectionRecord, Pipeline]:
        """A collection and the pipeline that serves it."""
        record = await self.storage.get_collection(name)
        return record, self.pipeline_for(record)


def min_cosine(pipeline: Pipeline, threshold: float) -> float:
    """The cosine similarity `threshold` % stands for, within [-1, 1] (a steep calibration
    maps a tiny threshold below -1, which no store accepts)."""
    return min(1.0, max(-1.0, pipeline.calibration.cosine_at(threshold)))


def similarity(pipeline: Pipeline, cosine: float) -> float:
    """The calibrated similarity (0-100) of a cosine similarity."""
    return float(pipeline.calibration.similarity(float(cosine)))
