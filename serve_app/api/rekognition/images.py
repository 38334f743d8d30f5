"""The `Image` of a request: its `Bytes`, or an `S3Object` fetched with boto3.

Limits as AWS: 5 MB for Bytes (checked by validation against the model), 15 MB for an S3
object. S3 is plain boto3 with a configurable endpoint (empty: AWS itself) and the standard
credential chain (AWS_* variables, shared files, instance roles), so MinIO, Ceph or any
S3-compatible store works the same.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from serve_app.api.rekognition.errors import RekognitionError, invalid_parameter

logger = logging.getLogger(__name__)

MAX_S3_IMAGE_BYTES = 15 * 1024 * 1024
_S3_CONFIG = Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 3})


def invalid_s3_object(message: str) -> RekognitionError:
    return RekognitionError("InvalidS3ObjectException", message)


class ImageLoader:
    """Turns a validated `Image` member into image bytes."""

    def __init__(self, s3_endpoint_url: str = "", region: str = "us-east-1") -> None:
        self.s3_endpoint_url = s3_endpoint_url
        self.region = region
        self._client: Any = None
        self._lock = threading.Lock()

    async def load(self, image: dict[str, Any], name: str = "Image") -> bytes:
        """The bytes of `image` (`name` is the request member, for messages)."""
        has_bytes, has_s3 = "Bytes" in image, "S3Object" in image
        if has_bytes == has_s3:
            raise invalid_parameter(f"{name} must contain exactly one of Bytes or S3Object")
        if has_bytes:
            return image["Bytes"]
        return await asyncio.to_thread(self._fetch, image["S3Object"], name)

    def _s3(self) -> Any:
        # boto3 clients are thread-safe once made; making one is not.
        with self._lock:
            if self._client is None:
                self._client = boto3.session.Session().client(
                    "s3",
                    endpoint_url=self.s3_endpoint_url or None,
                    region_name=self.region,
                    config=_S3_CONFIG,
                )
            return self._client

    def _fetch(self, s3_object: dict[str, Any], name: str) -> bytes:
        bucket, key = s3_object.get("Bucket"), s3_object.get("Name")
        if not bucket or not key:
            raise invalid_parameter(f"{name}.S3Object needs a Bucket and a Name")
        request = {"Bucket": bucket, "Key": key}
        if "Version" in s3_object:
            request["VersionId"] = s3_object["Version"]
        where = f"s3://{bucket}/{key}"
        try:
            response = self._s3().get_object(**request)
            size = int(response.get("ContentLength") or 0)
            if size > MAX_S3_IMAGE_BYTES:
                response["Body"].close()
                raise RekognitionError(
                    "ImageTooLargeException",
                    f"{where} is {size:,} bytes; S3 images may be at most "
                    f"{MAX_S3_IMAGE_BYTES:,} bytes",
                )
            data = response["Body"].read(MAX_S3_IMAGE_BYTES + 1)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "error")
            raise invalid_s3_object(
                f"Unable to get object {where} from S3 ({code}). "
                "Check object key, region and/or access permissions."
            ) from None
        except BotoCoreError as exc:
            logger.warning("S3 fetch of %s failed: %s", where, exc)
            raise invalid_s3_object(f"Unable to get object {where} from S3: {exc}") from None
        if len(data) > MAX_S3_IMAGE_BYTES:
            raise RekognitionError(
                "ImageTooLargeException",
                f"{where} is over {MAX_S3_IMAGE_BYTES:,} bytes, the limit for S3 images",
            )
        return data
