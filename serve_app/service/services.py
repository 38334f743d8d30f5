"""The composition root of the service layer: one context, the services built over it."""

from __future__ import annotations

from dataclasses import dataclass

from serve_app.service.clustering import ClusterService
from serve_app.service.context import CollectionContext
from serve_app.service.faces import FaceService
from serve_app.service.identify import IdentifyService
from serve_app.service.people import PeopleService
from serve_app.service.persons import PersonService
from serve_app.service.ports import Pipeline, Storage


@dataclass(frozen=True)
class Services:
    """Everything the adapters (REST, Rekognition, CLI) call, over one shared context."""

    context: CollectionContext
    faces: FaceService
    persons: PersonService
    clusters: ClusterService
    people: PeopleService
    identify: IdentifyService

    @classmethod
    def build(
        cls,
        storage: Storage,
        pipelines: dict[str, Pipeline],
        default_pack: str,
        *,
        store_images: bool = False,
    ) -> Services:
        context = CollectionContext(storage, pipelines, default_pack, store_images)
        return cls(
            context,
            FaceService(context),
            PersonService(context),
            ClusterService(context),
            PeopleService(context),
            IdentifyService(context),
        )
