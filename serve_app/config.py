"""One typed settings object, read from FACESERVE_* environment variables (pydantic-settings).

The defaults make the embedded, offline setup work with no configuration at all. Each field
is declared once, with its type and default; pydantic parses the variables, and a value that
does not parse is an `InvalidSetting` (an `InvalidParameter`) naming the variable, at start.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from serve_app.errors import InvalidParameter

if TYPE_CHECKING:
    from serve_app.store.vectors.replica import LocalIndexConfig

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


class InvalidSetting(InvalidParameter):
    """A FACESERVE_* variable (or a keyword override) that cannot be what its setting is."""


# The environment `from_env` reads instead of os.environ, for the duration of one call.
_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("faceserve_environ", default=None)


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source, reading a given mapping."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        # As pydantic-settings reads os.environ here: names match case-insensitively, and
        # an empty value is unset (env_ignore_empty).
        return {k.lower(): v for k, v in self._environ.items() if v != ""}


class Settings(BaseSettings):
    """Every knob of the service. Field `x_y` is read from `FACESERVE_X_Y` (an empty value
    counts as unset); a value that does not parse is an `InvalidSetting` naming it."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_ignore_empty=True,
        frozen=True,
        extra="forbid",
        validate_default=False,
    )

    data_dir: Path = Field(default_factory=_default_data_dir)
    model_dir: Path = Field(default_factory=_default_model_dir)
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
    detector: Literal["hog", "cnn"] = "hog"
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
    aws_keys: str = Field(default="", repr=False)  # secrets: never in a repr or log
    aws_keys_file: Path | None = None
    aws_auth: str = "sigv4"
    # REST and Rekognition authentication: "enabled" (API keys, the default) or "disabled"
    # (logged as a warning: anyone who reaches the port may do anything; development only).
    auth: Literal["enabled", "disabled"] = "enabled"
    # A first admin key's secret, given at start (like a master key; never logged). Its key id
    # is `admin` (for SigV4). Keys made with `faceserve keys create` live in the database.
    admin_key: str = Field(default="", repr=False)
    # Whether /metrics answers without a key (Prometheus scrapers); false: it needs `read`.
    metrics_public: bool = True
    # Requests a second per key, by role, and per client address for requests without a key
    # ("anonymous"); a bucket holds `rate_limit_burst_s` seconds of them. 0: unlimited.
    rate_limits: dict[str, float] = Field(
        default_factory=lambda: {"admin": 200.0, "write": 100.0, "read": 100.0, "anonymous": 20.0}
    )
    rate_limit_burst_s: float = 2.0
    # Audit log entries older than this are deleted (checked hourly by each Ingress).
    audit_retention_days: float = 365.0
    # AES-256-GCM key for stored photos (FACESERVE_STORE_IMAGES): 32 bytes, base64, here or in
    # a file. Storing photos without one is refused at start.
    image_key: str = Field(default="", repr=False)  # secret: never in a repr or log
    image_key_file: Path | None = None
    # Where S3Object images are fetched from (empty: AWS's own endpoint for aws_region).
    s3_endpoint_url: str = ""
    aws_region: str = "us-east-1"
    # Pinecone vector backend, offered to new collections when the API key is set (PostgreSQL
    # stays the source of truth; see the README). Host: the control-plane URL, empty for
    # Pinecone's cloud, e.g. http://localhost:5080 for Pinecone Local.
    pinecone_api_key: str = Field(default="", repr=False)  # secret: never in a repr or log
    pinecone_host: str = ""
    # Indexes are named `<prefix>-<collection uuid hex>`: at most 12 characters of a-z 0-9 -.
    pinecone_index_prefix: str = "faceserve"
    # Where a collection's serverless index lives unless the collection says otherwise.
    pinecone_cloud: str = "aws"
    pinecone_region: str = "us-east-1"
    # Seconds between the Search deployment's repair passes (pending pushes, missing indexes).
    pinecone_repair_interval_s: float = 60.0
    # Replica-local ANN indexes of large pgvector collections in each Search replica (see
    # the README, "Search at scale"): on/off, the memory cap of one replica's indexes
    # together (past it a collection is searched in PostgreSQL), the size from which a
    # collection gets one, the seconds between reads of the change log (how stale another
    # replica's writes may be), and the candidates of the PQ scan scored exactly.
    local_index: bool = True
    local_index_max_bytes: int = Field(default=8 * 2**30, ge=0)
    local_index_min_faces: int = Field(default=5_000, ge=0)
    local_index_poll_s: float = Field(default=0.2, gt=0, le=60)
    local_index_rerank: int = Field(default=500, ge=10, le=100_000)

    @property
    def local_index_config(self) -> LocalIndexConfig | None:
        """The Search replicas' local indexes, None when FACESERVE_LOCAL_INDEX is off."""
        if not self.local_index:
            return None
        from serve_app.store.vectors.replica import LocalIndexConfig

        return LocalIndexConfig(
            max_bytes=self.local_index_max_bytes,
            min_faces=self.local_index_min_faces,
            poll_interval_s=self.local_index_poll_s,
            rerank=self.local_index_rerank,
        )

    # Album jobs. Queue transport: "postgres" (rows leased with FOR UPDATE SKIP LOCKED) or
    # "sqs" (messages on job_sqs_queue_url; the job's state stays in PostgreSQL).
    job_queue: Literal["postgres", "sqs"] = "postgres"
    job_sqs_queue_url: str = ""
    # Where messages go after job_max_attempts receives (a redrive policy set at start).
    job_sqs_dlq_url: str = ""
    # SQS endpoint (empty: AWS's own for aws_region), e.g. a moto server in tests.
    job_sqs_endpoint_url: str = ""
    # S3 endpoint album sources are listed and read from (empty: s3_endpoint_url, else AWS).
    job_s3_endpoint_url: str = ""
    # Server-side folders `file:///…` sources may read, separated by commas (empty: none).
    job_folder_roots: str = ""
    # Largest archive an upload may be, in bytes (2 GiB).
    job_archive_max_bytes: int = 2 * 1024**3
    # Seconds one image may take before its worker is considered hung (a job may ask less).
    job_image_timeout_s: float = 60.0
    # Tries per image (a hang or a crashed worker counts one) before it fails as `timeout`.
    job_max_attempts: int = 3
    # Index workers (Ray actors, one model pack each) scale with the queue depth: one per
    # job_images_per_worker images waiting, within these bounds (two: one per core of the
    # 2-core machine the album benchmark ran on).
    job_min_workers: int = 0
    job_max_workers: int = 2
    job_images_per_worker: int = 20
    # Ray's logical CPUs per worker: none by default, so autoscaled replicas holding every
    # logical CPU never keep a job waiting; the workers run niced, live requests go first.
    job_worker_cpus: float = 0.0
    job_worker_nice: int = 10
    # Images a worker reads and embeds together.
    job_batch_size: int = 4
    # Clustering a collection of at least this many faces plans in a Ray task of its own,
    # niced, whose memory (about 17 GB at 1M faces) goes when it ends; smaller collections
    # plan in the ingress's thread pool, saving the task's start.
    cluster_ray_min_faces: int = 20_000
    cluster_nice: int = 10

    @property
    def image_limits(self) -> ImageLimits:
        return ImageLimits(self.max_image_bytes, self.max_image_pixels, self.min_image_side)

    @property
    def folder_roots(self) -> list[Path]:
        """The folders album jobs may read (`job_folder_roots`)."""
        return [Path(p.strip()).expanduser() for p in self.job_folder_roots.split(",") if p.strip()]

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

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as err:
            raise InvalidSetting(_describe(err, values)) from None

    @property
    def photo_key(self) -> bytes | None:
        """The stored-photo key (32 bytes) when photos are stored; InvalidSetting if missing."""
        if not self.store_images:
            return None
        from serve_app.store.photo_cipher import load_photo_key

        return load_photo_key(self.image_key, self.image_key_file)

    @field_validator("data_dir", "model_dir", "aws_keys_file", "image_key_file", mode="after")
    @classmethod
    def _expand_home(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Keyword values win over the environment; no .env or secrets files are read.
        environ = _ENVIRON.get()
        env = env_settings if environ is None else _MappingEnvSource(settings_cls, environ)
        return init_settings, env

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read settings from `environ` (default: os.environ); keyword overrides win."""
        unknown = sorted(set(overrides) - set(cls.model_fields))
        if unknown:
            raise InvalidSetting(f"unknown setting {unknown[0]!r}")
        token = _ENVIRON.set(environ)
        try:
            return cls(**overrides)
        finally:
            _ENVIRON.reset(token)


_WHAT = {
    "int_parsing": "a valid integer",
    "float_parsing": "a valid number",
    "bool_parsing": "a valid boolean (true/false, 1/0, yes/no, on/off)",
    "path_type": "a valid path",
}


def _describe(err: ValidationError, values: Mapping[str, Any]) -> str:
    """The first problem of `err` in words, naming the variable (or keyword) it came from."""
    problem = err.errors()[0]
    name = str(problem["loc"][0]) if problem["loc"] else "?"
    if problem["type"] == "extra_forbidden":
        return f"unknown setting {name!r}"
    source = name if name in values else f"{ENV_PREFIX}{name.upper()}"
    what = _WHAT.get(problem["type"], problem["msg"].lower())
    if not what.startswith("a "):
        return f"{source}={problem.get('input')!r}: {what}"
    return f"{source}={problem.get('input')!r} is not {what}"
