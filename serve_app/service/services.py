"""The composition root of the service layer: one context, the services built over it."""

from __future__ import annotations

from dataclasses import dataclass

from serve_app.service.clustering import ClusterService, Planner
from serve_app.service.context import CollectionContext
from serve_app.service.erasure import ErasureService
from serve_app.service.faces import FaceService
from serve_app.service.identify import IdentifyService
from serve_app.service.jobs import JobService
from serve_app.service.people import PeopleService
from serve_app.service.persons import PersonService
from serve_app.service.ports import Pipeline, Storage
from serve_app.store.photo_cipher import PhotoCipher


@dataclass(frozen=True)
class Services:
    """Everything the adapters (REST, Rekognition, CLI) call, over one shared context."""

    context: CollectionContext
    faces: FaceService
    persons: PersonService
    erasure: ErasureService
    clusters: ClusterService
    people: PeopleService
    identify: IdentifyService
    jobs: JobService | None = None  # album jobs, where the service runs them

    @classmethod
    def build(
        cls,
        storage: Storage,
        pipelines: dict[str, Pipeline],
        default_pack: str,
        *,
        store_images: bool = False,
        photo_key: bytes | None = None,
        jobs: JobService | None = None,
        cluster_planner: Planner | None = None,
        cluster_planner_min_faces: int = 0,
    ) -> Services:
        """`photo_key`: stored photos are sealed with it (AES-GCM); required with
        `store_images`. `jobs`: album jobs, where the service runs them. `cluster_planner`:
        where clustering of collections of `cluster_planner_min_faces` or more is planned."""
        cipher = None if photo_key is None else PhotoCipher(photo_key)
        context = CollectionContext(storage, pipelines, default_pack, store_images, cipher)
        return cls(
            context,
            FaceService(context),
            PersonService(context),
            ErasureService(context),
            ClusterService(context, cluster_planner, cluster_planner_min_faces),
            PeopleService(context),
            IdentifyService(context),
            jobs,
        )
