"""The Rekognition API through the real deployment graph: `faceserve serve`'s Ray Serve app,
whose ingress mounts the API from FACESERVE_AWS_KEYS-style settings, behind Serve's own HTTP
proxy (the Host that botocore signed must survive the proxy)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from serve_app.app import SERVE_CONFIG
from serve_app.config import Settings
from serve_app.server import start_local, stop_local
from serve_app.store.embedded import EmbeddedPostgres

from .conftest import KEY_ID, SECRET, free_port, make_client

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def served(model_dir: Path, postgres: EmbeddedPostgres) -> Iterator[str]:
    data_dir = Path(tempfile.mkdtemp(prefix="faceserve-rekognition-ray-"))
    port = free_port()
    settings = Settings(
        model_dir=model_dir,
        data_dir=data_dir,
        # A database of its own on the shared server (Ray workers reach it over TCP).
        database_url=postgres.fresh_database("rekognition_ray_tests"),
        port=port,
        aws_keys=f"{KEY_ID}:{SECRET},AKIAOTHERKEY00000000:other-secret",
    )
    try:
        start_local(settings, SERVE_CONFIG, num_cpus=2)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_local()
        shutil.rmtree(data_dir, ignore_errors=True)


def test_boto3_through_ray_serve(served: str, people_dir: Path) -> None:
    rekognition: Any = make_client(served)
    rekognition.create_collection(CollectionId="ray-people")
    try:
        ids = {}
        for person, photo in (("obama", "obama/obama.jpg"), ("biden", "biden/biden.jpg")):
            response = rekognition.index_faces(
                CollectionId="ray-people",
                Image={"Bytes": (people_dir / photo).read_bytes()},
                ExternalImageId=person,
            )
            ids[person] = response["FaceRecords"][0]["Face"]["FaceId"]
        query = {"Bytes": (people_dir / "obama/obama2.jpg").read_bytes()}
        found = rekognition.search_faces_by_image(CollectionId="ray-people", Image=query)
        assert found["FaceMatches"][0]["Face"]["ExternalImageId"] == "obama"
        assert "BoundingBox" in found["FaceMatches"][0]["Face"]
        # Persons go through the Search deployment's storage handle.
        rekognition.create_user(CollectionId="ray-people", UserId="obama")
        rekognition.associate_faces(
            CollectionId="ray-people", UserId="obama", FaceIds=[ids["obama"]]
        )
        users = rekognition.search_users_by_image(CollectionId="ray-people", Image=query)
        assert users["UserMatches"][0]["User"]["UserId"] == "obama"
        with pytest.raises(rekognition.exceptions.ResourceNotFoundException):
            rekognition.describe_collection(CollectionId="no-such-collection")
        # The second configured key works too; a wrong secret does not.
        other: Any = make_client(served, "AKIAOTHERKEY00000000", "other-secret")
        assert "ray-people" in other.list_collections()["CollectionIds"]
        with pytest.raises(ClientError) as caught:
            make_client(served, secret="wrong").list_collections()
        assert caught.value.response["Error"]["Code"] == "InvalidSignatureException"
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    finally:
        rekognition.delete_collection(CollectionId="ray-people")
