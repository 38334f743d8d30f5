"""A running service for the Rekognition API tests: the REST app with the Rekognition route,
served by uvicorn on a free 127.0.0.1 port, over the real dlib-r29 pack and a real embedded
PostgreSQL; moto's standalone S3 server stands in for S3 (which cannot be reached here)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import uvicorn
from botocore.config import Config

from serve_app.api import build_rest_app
from serve_app.config import RekognitionConfig, Settings
from serve_app.service.access import AccessControl, configured_keys
from serve_app.service.ports import LocalPipeline, LocalStorage
from serve_app.service.services import Services
from serve_app.store import EmbeddedPostgres, Store
from serve_app.store.security import SecurityStore
from serve_app.vision.packs.dlib_r29 import DlibR29Pack
from tests.conftest import free_port, moto_server

KEY_ID = "AKIAFACESERVETEST001"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYFACESERVE"
REGION = "us-east-1"
# Credentials the *service* uses for S3 (moto accepts any); the clients have their own.
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "s3-reader",
    "AWS_SECRET_ACCESS_KEY": "s3-reader-secret",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server, and the standard AWS_* variables the service's S3 client reads."""
    with moto_server(S3_ENV) as url:
        yield url


@pytest.fixture(scope="session")
def rekognition_database(postgres: EmbeddedPostgres) -> str:
    # A database of its own on the shared server: these tests see only their collections.
    return postgres.fresh_database("rekognition_tests")


@pytest.fixture(scope="session")
def security(rekognition_database: str) -> Iterator[SecurityStore]:
    """The key store (keys made with `faceserve keys create` or POST /v1/keys live here)."""
    opened = SecurityStore.open(rekognition_database)
    yield opened
    opened.close()


@pytest.fixture(scope="session")
def rekognition_service(
    pack: DlibR29Pack, settings: Settings, rekognition_database: str
) -> Iterator[Services]:
    store = Store.open(rekognition_database)
    pipeline = LocalPipeline(pack, settings.image_limits)
    yield Services.build(LocalStorage(store), {pack.name: pipeline}, pack.name)
    store.close()


@pytest.fixture(scope="session")
def endpoint(
    rekognition_service: Services, s3_endpoint: str, security: SecurityStore
) -> Iterator[str]:
    """http://127.0.0.1:PORT serving REST v1 and the Rekognition API: one key store, holding
    the configured key (as FACESERVE_AWS_KEYS gives it) and the database's keys."""
    config = RekognitionConfig(keys={KEY_ID: SECRET}, s3_endpoint_url=s3_endpoint, region=REGION)
    access = AccessControl(
        security,
        configured=configured_keys("", config.keys),
        rate_limits={"read": 1.0},  # a read key's bucket: 1/s, 2 at once (throttling test)
    )
    app = build_rest_app(rekognition_service, rekognition=config, access=access)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", access_log=False
        )
    )
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=15)


def make_client(endpoint: str, key_id: str = KEY_ID, secret: str = SECRET):  # noqa: ANN201
    """A boto3 Rekognition client, exactly as a user makes one (retries off: errors at once)."""
    return boto3.session.Session().client(
        "rekognition",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, read_timeout=300),
    )


@pytest.fixture(scope="session")
def rekognition(endpoint: str):  # noqa: ANN201 - boto3 client classes are generated
    return make_client(endpoint)


@pytest.fixture(scope="session")
def people_dir(faces_dir: Path) -> Path:
    return faces_dir / "people" / "face_recognition"
