"""Where an album job's images come from: an S3 prefix, a server-side folder, an archive.

Each source lists its images in a deterministic order (pages of keys, sorted) and reads
one image by key with a byte limit. Nothing here trusts a name: folder paths are resolved
and must stay inside the allowed roots, archive members with absolute or `..` names or that
are links are refused, and archive members are read with their real size bounded, whatever
their headers claim (zip bombs).
"""

from __future__ import annotations

import os
import posixpath
import re
import stat
import tarfile
import threading
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlparse

from serve_app.errors import FaceserveError, InvalidParameter, NotFound
from serve_app.service.params import MAX_EXTERNAL_ID

# File names (by extension) that are images; other files of a source are ignored.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})
# An archive member whose size over its compressed size passes this is refused: JPEGs and
# PNGs hardly compress, so a high ratio is a bomb, not a photo.
MAX_COMPRESSION_RATIO = 50
MAX_ARCHIVE_MEMBERS = 1_000_000
PAGE = 1000
_NOT_EXTERNAL_ID = re.compile(r"[^a-zA-Z0-9_.\-:]")


class SourceError(FaceserveError):
    """One image of a source cannot be read; `reason` is its code in the job's failures."""

    code = "source_error"
    http_status = 400

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Listing:
    """A page of a source's image keys, and how many non-image files it skipped."""

    keys: list[str]
    ignored: int = 0


class AlbumSource(Protocol):
    kind: str

    def pages(self) -> Iterator[Listing]:
        """The source's images, page by page, in a fixed order."""
        ...

    def read(self, key: str, max_bytes: int) -> bytes:
        """One image's bytes; SourceError (with a reason) when it cannot be had."""
        ...


def is_image_name(name: str) -> bool:
    base = posixpath.basename(name)
    return not base.startswith(".") and posixpath.splitext(base)[1].lower() in IMAGE_SUFFIXES


def external_image_id_for(key: str) -> str:
    """The key as a Rekognition ExternalImageId (`[a-zA-Z0-9_.\\-:]+`, 255 at most): path
    separators become `:`, anything else not allowed `_`; a long key keeps its end."""
    value = _NOT_EXTERNAL_ID.sub("_", key.strip("/").replace("/", ":")) or "_"
    return value[-MAX_EXTERNAL_ID:]


def _too_large(size: int, max_bytes: int) -> SourceError:
    return SourceError(
        "too_large", f"the file is {size:,} bytes; images may be at most {max_bytes:,} bytes"
    )


# -- S3 -----------------------------------------------------------------------------------


class S3Source:
    """`s3://bucket/prefix`: every image object under the prefix, in key order."""

    kind = "s3"

    def __init__(self, bucket: str, prefix: str, endpoint_url: str = "", region: str = "") -> None:
        self.bucket, self.prefix = bucket, prefix
        self._endpoint_url = endpoint_url or None
        self._region = region or None
        self._local = threading.local()

    @property
    def _client(self):  # noqa: ANN202 - boto3's generated client type
        client = getattr(self._local, "client", None)
        if client is None:  # boto3 clients are thread-safe, but sessions are not: one each
            import boto3
            from botocore.config import Config

            client = boto3.session.Session().client(
                "s3",
                endpoint_url=self._endpoint_url,
                region_name=self._region,
                config=Config(retries={"max_attempts": 3, "mode": "standard"}),
            )
            self._local.client = client
        return client

    def _error(self, err: Exception, what: str) -> FaceserveError:
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(err, ClientError):
            code = err.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchBucket", "404") and what == "bucket":
                return NotFound(f"S3 bucket {self.bucket!r} does not exist")
            if code in ("NoSuchKey", "404"):
                return SourceError("not_found", f"s3://{self.bucket}/{what} no longer exists")
            if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                return InvalidParameter(f"S3 refused access to bucket {self.bucket!r} ({code})")
            return SourceError("read_error", f"S3 error {code or err} on {what}")
        if isinstance(err, BotoCoreError):
            return SourceError("read_error", f"S3 unreachable: {err}")
        raise err

    def pages(self) -> Iterator[Listing]:
        paginator = self._client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
                names = [o["Key"] for o in page.get("Contents", []) if not o["Key"].endswith("/")]
                keys = sorted(k for k in names if is_image_name(k))
                yield Listing(keys, len(names) - len(keys))
        except Exception as err:  # noqa: BLE001 - mapped to our errors, or re-raised
            mapped = self._error(err, "bucket")
            if isinstance(mapped, SourceError):  # the listing itself failed: the job fails
                raise InvalidParameter(mapped.message) from None
            raise mapped from None

    def read(self, key: str, max_bytes: int) -> bytes:
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=key)
            size = int(response.get("ContentLength") or 0)
            if size > max_bytes:
                response["Body"].close()
                raise _too_large(size, max_bytes)
            data = response["Body"].read(max_bytes + 1)
        except SourceError:
            raise
        except Exception as err:  # noqa: BLE001
            mapped = self._error(err, key)
            raise (
                mapped
                if isinstance(mapped, SourceError)
                else SourceError("read_error", mapped.message)
            ) from None
        if len(data) > max_bytes:
            raise _too_large(len(data), max_bytes)
        return data


# -- folders ------------------------------------------------------------------------------


class FolderSource:
    """`file:///path`: every image file below a folder inside an allowed root, by path.
    Symbolic links are followed only where they stay inside the folder."""

    kind = "folder"

    def __init__(self, folder: Path) -> None:
        self.root = folder

    def _inside(self, path: Path) -> Path:
        real = path.resolve()
        if real != self.root and self.root not in real.parents:
            raise SourceError("unsafe_path", f"{path} leads outside the job's folder")
        return real

    def pages(self) -> Iterator[Listing]:
        keys: list[str] = []
        ignored = 0
        for directory, subdirs, files in os.walk(self.root, followlinks=False):
            subdirs.sort()
            for name in sorted(files):
                relative = os.path.relpath(os.path.join(directory, name), self.root)
                key = relative.replace(os.sep, "/")
                if is_image_name(key):
                    keys.append(key)
                else:
                    ignored += 1
                if len(keys) >= PAGE:
                    yield Listing(keys, ignored)
                    keys, ignored = [], 0
        yield Listing(keys, ignored)

    def read(self, key: str, max_bytes: int) -> bytes:
        if key.startswith("/") or ".." in key.split("/"):
            raise SourceError("unsafe_path", f"{key!r} is not a path inside the job's folder")
        path = self._inside(self.root / key)
        try:
            with open(path, "rb") as handle:
                info = os.fstat(handle.fileno())
                if not stat.S_ISREG(info.st_mode):
                    raise SourceError("read_error", f"{key} is not a regular file")
                if info.st_size > max_bytes:
                    raise _too_large(info.st_size, max_bytes)
                data = handle.read(max_bytes + 1)
        except FileNotFoundError:
            raise SourceError("not_found", f"{key} no longer exists") from None
        except OSError as exc:
            raise SourceError("read_error", f"cannot read {key}: {exc.strerror}") from None
        if len(data) > max_bytes:
            raise _too_large(len(data), max_bytes)
        return data


def folder_source(url: str, allowed_roots: Sequence[Path]) -> FolderSource:
    """The folder of a `file:///…` URL, checked against the allowed roots."""
    parsed = urlparse(url)
    if parsed.netloc not in ("", "localhost"):
        raise InvalidParameter("source file:// URLs name a folder on the server: file:///path")
    if not allowed_roots:
        raise InvalidParameter(
            "server-side folders are not enabled: set FACESERVE_JOB_FOLDER_ROOTS to the "
            "folders jobs may read"
        )
    raw = unquote(parsed.path)
    if "\x00" in raw or ".." in Path(raw).parts:
        raise InvalidParameter("source folder must not contain '..'")
    folder = Path(raw).resolve()
    roots = [Path(r).resolve() for r in allowed_roots]
    if not any(folder == r or r in folder.parents for r in roots):
        raise InvalidParameter(
            f"source folder {raw} is not inside an allowed root "
            f"({', '.join(str(r) for r in roots)})"
        )
    if not folder.is_dir():
        raise NotFound(f"source folder {raw} does not exist")
    return FolderSource(folder)


# -- archives -----------------------------------------------------------------------------


def _member_problem(name: str) -> str | None:
    """Why an archive member's name is unsafe (None when it is a plain relative path)."""
    if not name or "\x00" in name or "\\" in name:
        return "has a backslash or NUL in its name"
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "has an absolute path"
    if ".." in name.split("/"):
        return "climbs out with '..'"
    return None


class ArchiveSource:
    """An uploaded .zip or .tar, kept on disk: members are read one by one, never extracted
    (so no member name can write anywhere)."""

    kind = "archive"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._zip: zipfile.ZipFile | None = None
        self._tar: tarfile.TarFile | None = None
        self._members: dict[str, tarfile.TarInfo] = {}
        if zipfile.is_zipfile(path):
            self.format = "zip"
        elif _is_plain_tar(path):
            self.format = "tar"
        else:
            raise InvalidParameter(
                "the archive is not a .zip or an uncompressed .tar (compressed tars cannot be "
                "read member by member: unpack them, or zip the photos)"
            )

    def _open(self) -> None:
        if self.format == "zip" and self._zip is None:
            self._zip = zipfile.ZipFile(self.path)
        if self.format == "tar" and self._tar is None:
            self._tar = tarfile.open(self.path, "r:")  # noqa: SIM115 - kept open for reads
            self._members = {m.name: m for m in self._tar.getmembers()}

    def _entries(self) -> list[tuple[str, bool]]:
        """(name, is a regular file) of every member but folders."""
        with self._lock:
            self._open()
            if self._zip is not None:
                infos = self._zip.infolist()
                entries = [
                    (i.filename, i.external_attr >> 16 & 0o170000 != 0o120000)
                    for i in infos
                    if not i.is_dir()
                ]
            else:
                entries = [(m.name, m.isreg()) for m in self._members.values() if not m.isdir()]
        if len(entries) > MAX_ARCHIVE_MEMBERS:
            raise InvalidParameter(f"the archive has more than {MAX_ARCHIVE_MEMBERS:,} members")
        return entries

    def pages(self) -> Iterator[Listing]:
        entries = sorted(self._entries())
        keys = [name for name, _ in entries if is_image_name(name)]
        ignored = len(entries) - len(keys)
        for start in range(0, len(keys), PAGE):
            yield Listing(keys[start : start + PAGE], ignored if start == 0 else 0)
        if not keys:
            yield Listing([], ignored)

    def read(self, key: str, max_bytes: int) -> bytes:
        problem = _member_problem(key)
        if problem:
            raise SourceError("unsafe_path", f"archive member {key!r} {problem}")
        with self._lock:
            self._open()
            if self._zip is not None:
                return self._read_zip(key, max_bytes)
            return self._read_tar(key, max_bytes)

    def _read_zip(self, key: str, max_bytes: int) -> bytes:
        assert self._zip is not None
        try:
            info = self._zip.getinfo(key)
        except KeyError:
            raise SourceError("not_found", f"archive member {key!r} is missing") from None
        if info.external_attr >> 16 & 0o170000 == 0o120000:
            raise SourceError("unsafe_path", f"archive member {key!r} is a symbolic link")
        if info.file_size > max_bytes:
            raise _too_large(info.file_size, max_bytes)
        if info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1) > 0:
            raise SourceError(
                "suspicious_archive",
                f"archive member {key!r} expands {info.file_size / max(info.compress_size, 1):.0f}"
                f" times (a zip bomb?); photos hardly compress",
            )
        try:
            with self._zip.open(info) as member:
                data = member.read(max_bytes + 1)  # the real size, whatever the header says
        except (zipfile.BadZipFile, OSError, EOFError, RuntimeError) as exc:
            raise SourceError("read_error", f"archive member {key!r}: {exc}") from None
        if len(data) > max_bytes:
            raise _too_large(len(data), max_bytes)
        return data

    def _read_tar(self, key: str, max_bytes: int) -> bytes:
        assert self._tar is not None
        member = self._members.get(key)
        if member is None:
            raise SourceError("not_found", f"archive member {key!r} is missing")
        if not member.isreg():
            raise SourceError("unsafe_path", f"archive member {key!r} is a link or device")
        if member.size > max_bytes:
            raise _too_large(member.size, max_bytes)
        handle = self._tar.extractfile(member)
        if handle is None:
            raise SourceError("read_error", f"archive member {key!r} has no data")
        try:
            data = handle.read(max_bytes + 1)
        except (tarfile.TarError, OSError) as exc:
            raise SourceError("read_error", f"archive member {key!r}: {exc}") from None
        if len(data) > max_bytes:
            raise _too_large(len(data), max_bytes)
        return data


def _is_plain_tar(path: Path) -> bool:
    try:
        with tarfile.open(path, "r:"):
            return True
    except (tarfile.TarError, OSError):
        return False


def parse_source(source: str) -> tuple[str, str, str]:
    """("s3", bucket, prefix) or ("folder", path, "") from the job's `source` string."""
    if not isinstance(source, str) or not source.strip():
        raise InvalidParameter("source must be s3://bucket/prefix or file:///path")
    if source.startswith("s3://"):
        rest = source[len("s3://") :]
        bucket, _, prefix = rest.partition("/")
        if not re.fullmatch(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]", bucket):
            raise InvalidParameter(f"source: {bucket!r} is not an S3 bucket name")
        return "s3", bucket, prefix
    if source.startswith("file://"):
        return "folder", source, ""
    raise InvalidParameter(
        "source must be s3://bucket/prefix or file:///path (or upload an archive)"
    )
