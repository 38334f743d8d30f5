"""The same workflow from the AWS CLI (`aws rekognition … --endpoint-url`), run as a user
runs it: a subprocess with credentials in the environment and no config files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .conftest import KEY_ID, REGION, SECRET

pytestmark = pytest.mark.timeout(600)

AWS = Path(sys.executable).parent / "aws"
COLLECTION = "cli-people"


def aws(endpoint: str, *args: str, secret: str = SECRET) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "AWS_ACCESS_KEY_ID": KEY_ID,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_MAX_ATTEMPTS": "1",
    }
    command = [str(AWS), "rekognition", *args, "--endpoint-url", endpoint, "--output", "json"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def ok(endpoint: str, *args: str) -> dict[str, Any]:
    result = aws(endpoint, *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout) if result.stdout.strip() else {}


def failure(endpoint: str, *args: str, secret: str = SECRET) -> str:
    result = aws(endpoint, *args, secret=secret)
    assert result.returncode != 0, result.stdout
    return result.stderr


@pytest.fixture(scope="module")
def cli_endpoint(endpoint: str) -> str:
    if not AWS.exists():
        pytest.skip(f"the AWS CLI is not installed at {AWS} (pip install awscli)")
    return endpoint


def test_the_workflow_from_the_aws_cli(cli_endpoint: str, people_dir: Path) -> None:
    e = cli_endpoint
    created = ok(e, "create-collection", "--collection-id", COLLECTION)
    assert created["StatusCode"] == 200 and created["FaceModelVersion"] == "dlib-r29:1"
    try:
        ids = {}
        for person, photo in (("obama", "obama/obama.jpg"), ("biden", "biden/biden.jpg")):
            indexed = ok(
                e,
                "index-faces",
                "--collection-id",
                COLLECTION,
                "--image-bytes",
                f"fileb://{people_dir / photo}",
                "--external-image-id",
                person,
                "--max-faces",
                "1",
            )
            [record] = indexed["FaceRecords"]
            assert record["Face"]["ExternalImageId"] == person
            ids[person] = record["Face"]["FaceId"]

        found = ok(
            e,
            "search-faces-by-image",
            "--collection-id",
            COLLECTION,
            "--image-bytes",
            f"fileb://{people_dir / 'obama/obama2.jpg'}",
        )
        assert found["FaceMatches"][0]["Face"]["ExternalImageId"] == "obama"

        compared = ok(
            e,
            "compare-faces",
            "--source-image-bytes",
            f"fileb://{people_dir / 'biden/biden.jpg'}",
            "--target-image-bytes",
            f"fileb://{people_dir / 'biden/biden2.jpg'}",
        )
        assert len(compared["FaceMatches"]) == 1

        ok(e, "create-user", "--collection-id", COLLECTION, "--user-id", "obama")
        associated = ok(
            e,
            "associate-faces",
            "--collection-id",
            COLLECTION,
            "--user-id",
            "obama",
            "--face-ids",
            ids["obama"],
        )
        assert associated["AssociatedFaces"] == [{"FaceId": ids["obama"]}]
        users = ok(
            e,
            "search-users-by-image",
            "--collection-id",
            COLLECTION,
            "--image-bytes",
            f"fileb://{people_dir / 'obama/obama2.jpg'}",
        )
        assert users["UserMatches"][0]["User"]["UserId"] == "obama"

        # The CLI paginates by itself: pages of one face, merged into one answer.
        listed = ok(e, "list-faces", "--collection-id", COLLECTION, "--page-size", "1")
        assert sorted(f["FaceId"] for f in listed["Faces"]) == sorted(ids.values())
        described = ok(e, "describe-collection", "--collection-id", COLLECTION)
        assert described["FaceCount"] == 2
        ok(e, "delete-user", "--collection-id", COLLECTION, "--user-id", "obama")
    finally:
        ok(e, "delete-collection", "--collection-id", COLLECTION)


def test_errors_from_the_aws_cli(cli_endpoint: str) -> None:
    e = cli_endpoint
    missing = failure(e, "describe-collection", "--collection-id", "no-such-collection")
    assert "ResourceNotFoundException" in missing and "DescribeCollection" in missing
    assert "InvalidSignatureException" in failure(e, "list-collections", secret="wrong")
