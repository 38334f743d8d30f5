"""`S3Object` images, fetched with plain boto3 from the configured S3 endpoint: moto's
standalone server here (S3 cannot be reached from the test machine)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.timeout(300)

BUCKET = "faceserve-photos"


@pytest.fixture(scope="module")
def s3(s3_endpoint: str) -> Any:
    """A user's S3 client, pointed at the same S3 the service reads."""
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="uploader",
        aws_secret_access_key="uploader-secret",
    )
    client.create_bucket(Bucket=BUCKET)
    client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return client


@pytest.fixture(scope="module")
def s3_collection(rekognition: Any) -> Iterator[str]:
    rekognition.create_collection(CollectionId="s3-people")
    yield "s3-people"
    rekognition.delete_collection(CollectionId="s3-people")


def test_index_and_search_images_stored_in_s3(
    rekognition: Any, s3: Any, s3_collection: str, people_dir: Path
) -> None:
    s3.put_object(
        Bucket=BUCKET, Key="enrol/obama.jpg", Body=(people_dir / "obama/obama.jpg").read_bytes()
    )
    s3.put_object(
        Bucket=BUCKET, Key="enrol/biden.jpg", Body=(people_dir / "biden/biden.jpg").read_bytes()
    )
    for person in ("obama", "biden"):
        indexed = rekognition.index_faces(
            CollectionId=s3_collection,
            Image={"S3Object": {"Bucket": BUCKET, "Name": f"enrol/{person}.jpg"}},
            ExternalImageId=person,
        )
        assert len(indexed["FaceRecords"]) == 1
    # A versioned object: the version asked for is the one read, not the latest.
    first = s3.put_object(
        Bucket=BUCKET, Key="query.jpg", Body=(people_dir / "obama/obama2.jpg").read_bytes()
    )
    s3.put_object(
        Bucket=BUCKET, Key="query.jpg", Body=(people_dir / "biden/biden2.jpg").read_bytes()
    )
    for version, expected in ((first["VersionId"], "obama"), (None, "biden")):
        s3_object = {"Bucket": BUCKET, "Name": "query.jpg"}
        if version:
            s3_object["Version"] = version
        found = rekognition.search_faces_by_image(
            CollectionId=s3_collection, Image={"S3Object": s3_object}
        )
        assert found["FaceMatches"][0]["Face"]["ExternalImageId"] == expected
    # S3 and Bytes mix in one request.
    compared = rekognition.compare_faces(
        SourceImage={"S3Object": {"Bucket": BUCKET, "Name": "enrol/obama.jpg"}},
        TargetImage={"Bytes": (people_dir / "obama/obama2.jpg").read_bytes()},
    )
    assert len(compared["FaceMatches"]) == 1


def test_s3_objects_may_be_larger_than_bytes_but_not_past_15_mb(rekognition: Any, s3: Any) -> None:
    # Noise compresses badly: a ~6.8 MB PNG, over the 5 MB of Bytes, under S3's 15 MB.
    noise = np.random.default_rng(0).integers(0, 256, (1500, 1500, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(noise).save(out, format="PNG", compress_level=0)
    assert 5 * 1024 * 1024 < out.tell() < 15 * 1024 * 1024
    s3.put_object(Bucket=BUCKET, Key="noise.png", Body=out.getvalue())
    detected = rekognition.detect_faces(Image={"S3Object": {"Bucket": BUCKET, "Name": "noise.png"}})
    assert detected["FaceDetails"] == []
    with pytest.raises(rekognition.exceptions.ImageTooLargeException):
        rekognition.detect_faces(Image={"Bytes": out.getvalue()})
    s3.put_object(Bucket=BUCKET, Key="huge.jpg", Body=b"\xff\xd8" + b"\0" * (15 * 1024 * 1024))
    with pytest.raises(rekognition.exceptions.ImageTooLargeException):
        rekognition.detect_faces(Image={"S3Object": {"Bucket": BUCKET, "Name": "huge.jpg"}})


def test_missing_s3_objects_are_invalid_s3_objects(rekognition: Any, s3: Any) -> None:
    errors = rekognition.exceptions
    with pytest.raises(errors.InvalidS3ObjectException):
        rekognition.detect_faces(Image={"S3Object": {"Bucket": BUCKET, "Name": "nothing.jpg"}})
    with pytest.raises(errors.InvalidS3ObjectException):
        rekognition.detect_faces(Image={"S3Object": {"Bucket": "no-such-bucket", "Name": "x.jpg"}})
    with pytest.raises(errors.InvalidS3ObjectException):
        rekognition.detect_faces(
            Image={
                "S3Object": {
                    "Bucket": BUCKET,
                    "Name": "query.jpg",
                    "Version": "no-such-version",
                }
            }
        )
    # Bytes that are not an image are a format error, from S3 as from Bytes.
    s3.put_object(Bucket=BUCKET, Key="notes.txt", Body=b"not an image")
    with pytest.raises(errors.InvalidImageFormatException):
        rekognition.detect_faces(Image={"S3Object": {"Bucket": BUCKET, "Name": "notes.txt"}})
    with pytest.raises(errors.InvalidParameterException, match="exactly one"):
        rekognition.detect_faces(
            Image={"Bytes": b"x", "S3Object": {"Bucket": BUCKET, "Name": "notes.txt"}}
        )
