"""The HTTP ingress: the REST app over the service layer, whose ports are deployment handles."""

from __future__ import annotations

from ray import serve
from ray.serve.handle import DeploymentHandle

from serve_app.config import Settings
from serve_app.deployments.remote import RemotePipeline, RemoteStorage, unwrap
from serve_app.service.jobs import JobService
from serve_app.service.ports import JOB_QUEUE_METHODS
from serve_app.service.services import Services
from serve_app.vision.calibration import load_calibration
from serve_app.vision.packs.registry import pack_class


@serve.deployment(name="Ingress", ray_actor_options={"num_cpus": 0.25})
@serve.ingress()
class Ingress:
    def __init__(
        self,
        detector: DeploymentHandle,
        embedder: DeploymentHandle,
        search: DeploymentHandle,
        settings: Settings,
        pack_name: str,
        database_url: str | None = None,
        jobs: DeploymentHandle | None = None,
    ) -> None:
        from serve_app.deployments.clustering import RayPlanner
        from serve_app.service.access import AccessControl
        from serve_app.store.security import SecurityStore

        cls = pack_class(pack_name)
        pipeline = RemotePipeline(
            detector, embedder, f"{cls.name}:{cls.version}", load_calibration(cls.name)
        )
        self.storage = RemoteStorage(search)
        self.jobs = jobs
        job_service = None
        if jobs is not None:
            job_service = JobService(
                RemoteStorage(jobs, JOB_QUEUE_METHODS),
                uploads_dir=settings.data_dir / "uploads",
                folder_roots=settings.folder_roots,
            )
        self.services = Services.build(
            self.storage,
            {pack_name: pipeline},
            pack_name,
            store_images=settings.store_images,
            jobs=job_service,
            photo_key=settings.photo_key,  # a missing key stops the start, saying which
            cluster_planner=RayPlanner(settings.cluster_nice),
            cluster_planner_min_faces=settings.cluster_ray_min_faces,
        )
        self.settings = settings
        # Keys, rate buckets and the audit log: straight to PostgreSQL (a hop to Search would
        # cost more than the 2 ms authentication may). Search has migrated the schema.
        self.security = SecurityStore.open(database_url, migrated=True) if database_url else None
        self.access = (
            AccessControl.from_settings(settings, self.security) if self.security else None
        )

    async def readiness(self) -> dict[str, bool]:
        try:
            database = bool(await self.storage.ping())
        except Exception:  # noqa: BLE001 - readiness reports, it does not raise
            database = False
        return {"models": True, "database": database}

    def __serve_build_asgi_app__(self):  # noqa: ANN204 - Serve's late-bound ASGI hook
        from serve_app.api.rest import build_rest_app

        return build_rest_app(
            self.services,
            readiness=self.readiness,
            max_image_bytes=self.settings.max_image_bytes,
            rekognition=self.settings.rekognition,
            max_archive_bytes=self.settings.job_archive_max_bytes,
            job_metrics=self.job_metrics if self.jobs is not None else None,
            access=self.access,
        )

    async def job_metrics(self) -> dict:
        assert self.jobs is not None
        return await unwrap(self.jobs.metrics.remote())
