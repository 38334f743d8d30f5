"""Builds the deployment graph. Ray Serve import path: `serve_app.app:build`.

    HTTP -> Ingress -+-> Detector (decode + detect + align)
                     +-> Embedder (batched ONNX)
                     +-> Search   (PostgreSQL + pgvector or Pinecone)
                     +-> Jobs     (album jobs: coordinator -> IndexWorker actors)

Deployment options (replicas, autoscaling, CPUs, batch sizes) live in serve_config.yaml;
`serve run serve_config.yaml` applies them itself, `faceserve serve` applies them with
`apply_config`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ray
import yaml
from ray.serve import Application
from ray.serve.deployment import Deployment

from serve_app.config import Settings
from serve_app.deployments.database import embedded_database_url
from serve_app.deployments.inference import Detector, Embedder
from serve_app.deployments.ingress import Ingress
from serve_app.deployments.jobs import Jobs
from serve_app.deployments.model_store import model_store
from serve_app.deployments.search import Search
from serve_app.vision.packs.registry import pack_class

SERVE_CONFIG = Path(__file__).resolve().parent.parent / "serve_config.yaml"
# Keys of a serve_config.yaml deployment entry that `Deployment.options` accepts.
_OPTION_KEYS = (
    "num_replicas",
    "autoscaling_config",
    "ray_actor_options",
    "max_ongoing_requests",
    "max_queued_requests",
    "user_config",
    "graceful_shutdown_timeout_s",
    "health_check_period_s",
    "health_check_timeout_s",
)


def deployment_options(config_path: Path | None) -> dict[str, dict[str, Any]]:
    """Per-deployment options from a Serve config file (first application)."""
    if config_path is None or not Path(config_path).is_file():
        return {}
    config = yaml.safe_load(Path(config_path).read_text()) or {}
    app = (config.get("applications") or [{}])[0]
    return {
        d["name"]: {k: v for k, v in d.items() if k in _OPTION_KEYS}
        for d in app.get("deployments", [])
    }


def build(args: dict[str, Any] | None = None) -> Application:
    """Ray Serve's entry point: `args` (the config's `args`) override FACESERVE_* settings."""
    return build_app(args)


def build_app(args: dict[str, Any] | None = None, config_path: Path | None = None) -> Application:
    """The application; with `config_path`, deployment options come from that Serve config."""
    overrides = {k: v for k, v in (args or {}).items() if v not in (None, "")}
    settings = Settings.from_env(**overrides)
    cls = pack_class(settings.model_pack)
    if cls.offline:
        cls.prepare(settings.model_dir)  # idempotent; a no-op once converted
    model_key = None
    path = cls.embedding_model_path(settings.model_dir)
    if path is not None:
        model_key = f"{cls.name}:{cls.version}:{path.name}"
        ray.get(model_store().put.remote(model_key, str(path)))
    database_url = settings.database_url or embedded_database_url(settings.data_dir)
    settings.photo_key  # noqa: B018 - storing photos without their key stops here, saying so
    _first_admin_key(settings, database_url)

    options = deployment_options(config_path)

    def configured(deployment: Deployment) -> Deployment:
        return deployment.options(**options.get(deployment.name, {}))

    detector = configured(Detector).bind(settings, cls.name)
    embedder = configured(Embedder).bind(settings, cls.name, model_key)
    search = configured(Search).bind(database_url, settings)
    jobs = configured(Jobs).bind(database_url, settings, cls.name, model_key)
    return configured(Ingress).bind(
        detector, embedder, search, settings, cls.name, database_url, jobs
    )


def _first_admin_key(settings: Settings, database_url: str) -> None:
    """Secure by default: on loopback with no key anywhere, make an admin key and print it
    once (the terminal of `faceserve serve`); beyond loopback, the Ingress refuses to start."""
    from serve_app.service.access import bootstrap_admin_key
    from serve_app.store.security import SecurityStore

    store = SecurityStore.open(database_url)  # migrates the control schema first
    try:
        made = bootstrap_admin_key(settings, store)
    finally:
        store.close()
    if made is not None:
        key_id, secret = made
        print(
            f"faceserve: no API key yet, so one admin key was made ({key_id}); it is shown "
            f"this once:\n\n    export FACESERVE_KEY={secret}\n\n"
            'then: curl -H "Authorization: Bearer $FACESERVE_KEY" '
            f"http://{settings.host}:{settings.port}/v1/collections",
            flush=True,
        )
