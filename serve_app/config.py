"""One typed settings object, read from FACESERVE_* environment variables.

The defaults make the embedded, offline setup work with no configuration at all.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from serve_app.errors import InvalidParameter

ENV_PREFIX = "FACESERVE_"


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "share"
    )
    return Path(base) / "faceserve"


def _default_model_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "faceserve" / "models"


@dataclass(frozen=True)
class ImageLimits:
    """What an uploaded image may be. Checked before any pixel is decoded."""

    max_bytes: int = 15 * 1024 * 1024
    max_pixels: int = 40_000_000
    min_side: int = 32


AWS_AUTH_MODES = ("sigv4", "disabled")


@dataclass(frozen=True)
class RekognitionConfig:
    """What the Rekognition-compatible API needs: secrets by access key id, auth mode, S3."""

    keys: dict[str, str] = field(default_factory=dict, repr=False)
    auth: str = "sigv4"
    s3_endpoint_url: str = ""
    region: str = "us-east-1"


def parse_aws_keys(text: str, source: str) -> dict[str, str]:
    """`KEY_ID:SECRET` entries separated by commas or newlines (# starts a comment line)."""
    keys: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip().startswith("#"):
            continue
        for entry in line.split(","):
            entry = entry.strip()
            if not entry:
                continue
            key_id, sep, secret = entry.partition(":")
            if not sep or not key_id.strip() or not secret.strip():
                # Never echo the entry: it may hold a secret.
                raise InvalidParameter(f"{source}: every entry must be KEY_ID:SECRET")
            keys[key_id.strip()] = secret.strip()
    return keys


@dataclass(frozen=True)
class Settings:
    """Every knob of the service. Field `x_y` is read from `FACESERVE_X_Y`."""

    data_dir: Path = field(default_factory=_default_data_dir)
    model_dir: Path = field(default_factory=_default_model_dir)
    model_pack: str = "dlib-r29"
    # PostgreSQL URL; empty: start an embedded PostgreSQL in data_dir.
    database_url: str = ""
    host: str = "127.0.0.1"
    port: int = 8000
    max_image_bytes: int = ImageLimits.max_bytes
    max_image_pixels: int = ImageLimits.max_pixels
    min_image_side: int = ImageLimits.min_side
    # Detection runs on a copy whose longer side is at most this; boxes map back to the original.
    detect_max_side: int = 1280
    # HOG finds faces down to ~80 px; images whose longer side is below this are upsampled once.
    detect_upsample_below: int = 800
    # Faces below this detector confidence (0-100) are not reported. For dlib's HOG, 60 is an
    # SVM margin of 0.135: it drops the upsampled pass's weakest false positives.
    detect_min_confidence: float = 60.0
    # Face detector of the dlib-r29 pack: "hog" or "cnn" (dlib's MMOD CNN, converted to ONNX).
    detector: str = "hog"
    # Threads per onnxruntime session (intra-op). 0 lets onnxruntime decide.
    embed_threads: int = 2
    embed_batch_size: int = 32
    # Average each face's embedding with its mirror image's (more accurate, ~2x embed cost).
    embed_flip: bool = True
    # Keep uploaded photos of indexed faces in the database. Off by default: photos of faces
    # are biometric data, and search needs only the embeddings.
    store_images: bool = False
    # `{name}` URL template `faceserve models pull` downloads from (a mirror); empty: upstream.
    insightface_url: str = ""
    # Rekognition-compatible API: access keys as "KEY_ID:SECRET[,KEY_ID:SECRET…]" and/or a file
    # of KEY_ID:SECRET lines. Requests are SigV4-verified against them; "disabled" (logged
    # loudly) accepts unsigned requests, for local development only.
    aws_keys: str = field(default="", repr=False)  # secrets: never in a repr or log
    aws_keys_file: Path | None = None
    aws_auth: str = "sigv4"
    # Where S3Object images are fetched from (empty: AWS's own endpoint for aws_region).
    s3_endpoint_url: str = ""
    aws_region: str = "us-east-1"
    # Pinecone vector backend, offered to new collections when the API key is set (PostgreSQL
    # stays the source of truth; see the README). Host: the control-plane URL, empty for
    # Pinecone's cloud, e.g. http://localhost:5080 for Pinecone Local.
    pinecone_api_key: str = field(default="", repr=False)  # secret: never in a repr or log
    pinecone_host: str = ""
    # Indexes are named `<prefix>-<collection uuid hex>`: at most 12 characters of a-z 0-9 -.
    pinecone_index_prefix: str = "faceserve"
    # Where a collection's serverless index lives unless the collection says otherwise.
    pinecone_cloud: str = "aws"
    pinecone_region: str = "us-east-1"
    # Seconds between the Search deployment's repair passes (pending pushes, missing indexes).
    pinecone_repair_interval_s: float = 60.0

    @property
    def image_limits(self) -> ImageLimits:
        return ImageLimits(self.max_image_bytes, self.max_image_pixels, self.min_image_side)

    @property
    def rekognition(self) -> RekognitionConfig:
        """The Rekognition API's settings, with the access keys read and checked."""
        keys = parse_aws_keys(self.aws_keys, "FACESERVE_AWS_KEYS")
        if self.aws_keys_file is not None:
            try:
                text = Path(self.aws_keys_file).read_text()
            except OSError as exc:
                raise InvalidParameter(
                    f"FACESERVE_AWS_KEYS_FILE {self.aws_keys_file}: {exc.strerror}"
                ) from None
            keys.update(parse_aws_keys(text, str(self.aws_keys_file)))
        if self.aws_auth not in AWS_AUTH_MODES:
            raise InvalidParameter(
                f"FACESERVE_AWS_AUTH={self.aws_auth!r}: use one of {', '.join(AWS_AUTH_MODES)}"
            )
        return RekognitionConfig(keys, self.aws_auth, self.s3_endpoint_url, self.aws_region)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Read settings from the environment; explicit keyword overrides win."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is None or raw == "":
                continue
            values[f.name] = _parse(f.name, f.type, raw)
        types = {f.name: f.type for f in fields(cls)}
        for name, value in overrides.items():
            if name not in types:
                raise InvalidParameter(f"unknown setting {name!r}")
            values[name] = _parse(name, types[name], value) if isinstance(value, str) else value
        return cls(**values)


def _parse(name: str, type_name: Any, raw: str) -> Any:
    type_name = str(type_name)
    try:
        if type_name in ("Path", "Path | None"):
            return Path(raw).expanduser()
        if type_name == "int":
            return int(raw)
        if type_name == "float":
            return float(raw)
        if type_name == "bool":
            lowered = raw.strip().lower()
            if lowered in {"1", "true", "yes", "on"}:
                return True
            if lowered in {"0", "false", "no", "off"}:
                return False
            raise ValueError(raw)
    except ValueError:
        raise InvalidParameter(
            f"{ENV_PREFIX}{name.upper()}={raw!r} is not a valid {type_name}"
        ) from None
    return raw
