"""What the load-test users send and record: the run manifest, multipart bodies, the ack log.

Shared by `loadtests/locustfile.py` (inside locust, under gevent) and the runner; it imports
nothing heavier than the standard library and the payload module.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from serve_app.loadtest.photos import Payload, PayloadSet

# The runner hands the locust process its run through these environment variables.
ENV_MANIFEST = "FACESERVE_LOADTEST_MANIFEST"
ENV_ACK_LOG = "FACESERVE_LOADTEST_ACK_LOG"
ENV_WAIT = "FACESERVE_LOADTEST_WAIT"


@dataclass
class RunManifest:
    """A seeded collection and the uploads to send to it."""

    collection: str
    payloads: PayloadSet
    # Query photos whose face was found in the seeded collection when the service was idle:
    # under load, a search with them must find it again.
    search_queries: list[str]
    _blobs: dict[str, bytes] = field(default_factory=dict, repr=False)

    def save(self, path: Path) -> None:
        body = {
            "collection": self.collection,
            "payloads": self.payloads.to_json(),
            "search_queries": self.search_queries,
        }
        path.write_text(json.dumps(body, indent=1))

    @classmethod
    def load(cls, path: Path) -> RunManifest:
        body = json.loads(Path(path).read_text())
        return cls(
            body["collection"], PayloadSet.from_json(body["payloads"]), body["search_queries"]
        )

    def by_name(self, name: str) -> Payload:
        for payload in self.payloads.payloads:
            if payload.name == name:
                return payload
        raise KeyError(name)

    def blob(self, payload: Payload) -> bytes:
        """The upload's bytes, read once per process."""
        if payload.name not in self._blobs:
            self._blobs[payload.name] = self.payloads.read(payload)
        return self._blobs[payload.name]


def multipart(
    fields: dict[str, str], files: dict[str, tuple[str, bytes]]
) -> tuple[bytes, dict[str, str]]:
    """A multipart/form-data body and its content-type header, as a browser would send."""
    boundary = f"----faceserve{uuid.uuid4().hex}"
    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value.encode()
            + b"\r\n"
        )
    for name, (filename, data) in files.items():
        parts.append(
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                f'filename="{filename}"\r\nContent-Type: image/jpeg\r\n\r\n'
            ).encode()
            + data
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def wait_range() -> tuple[float, float]:
    """The users' think time, seconds (min, max), from FACESERVE_LOADTEST_WAIT=`min,max`."""
    raw = os.environ.get(ENV_WAIT, "0,0")
    low, high = (float(x) for x in raw.split(","))
    return low, high


class AckLog:
    """Append-only JSON lines: each face the service acknowledged as indexed, and each face a
    user asked to delete (recorded *before* asking: it need not be found afterwards)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._file = open(path, "a", buffering=1) if path else None  # noqa: SIM115 - kept open

    def __enter__(self) -> AckLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    @classmethod
    def from_env(cls) -> AckLog:
        raw = os.environ.get(ENV_ACK_LOG)
        return cls(Path(raw) if raw else None)

    def indexed(self, collection: str, face_ids: list[str], source: str) -> None:
        for face_id in face_ids:
            self._write(
                {"op": "indexed", "collection": collection, "face_id": face_id, "source": source}
            )

    def deleting(self, collection: str, face_id: str) -> None:
        self._write({"op": "delete", "collection": collection, "face_id": face_id})

    def _write(self, record: dict[str, str]) -> None:
        if self._file is None:
            return
        line = json.dumps(record | {"t": round(time.time(), 3)}) + "\n"
        with self._lock:
            self._file.write(line)


@dataclass(frozen=True)
class Acknowledged:
    """What the ack log says must still be in the service: collection -> face ids."""

    faces: dict[str, set[str]]
    deleted: int

    @property
    def count(self) -> int:
        return sum(len(ids) for ids in self.faces.values())


def read_ack_log(path: Path) -> Acknowledged:
    """Faces acknowledged as indexed and never asked to be deleted, per collection."""
    indexed: dict[str, set[str]] = {}
    deleted: set[tuple[str, str]] = set()
    if path.exists():
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a killed writer: never acknowledged in full
            key = (record["collection"], record["face_id"])
            if record["op"] == "indexed":
                indexed.setdefault(key[0], set()).add(key[1])
            elif record["op"] == "delete":
                deleted.add(key)
    for collection, face_id in deleted:
        indexed.get(collection, set()).discard(face_id)
    return Acknowledged(indexed, len(deleted))
