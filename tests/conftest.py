"""Shared fixtures: a prepared model directory, the default pack, the test photos, and one
embedded PostgreSQL for every test that does not stop, kill or restart its server."""

from __future__ import annotations

import importlib.util
import io
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from serve_app.config import Settings
from serve_app.store import EmbeddedPostgres
from serve_app.vision.packs.dlib_r29 import DlibR29Pack

REPO = Path(__file__).resolve().parent.parent
SHARED_FACES = REPO.parent / "shared" / "data" / "faces"


def insightface_image(name: str) -> Path:
    """A sample photo that ships inside the insightface wheel."""
    spec = importlib.util.find_spec("insightface")
    assert spec is not None and spec.origin is not None
    return Path(spec.origin).parent / "data" / "images" / name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def moto_server(env: dict[str, str]) -> Iterator[str]:
    """moto's standalone server (S3, SQS, …) with these AWS_* variables set; its URL."""
    from moto.server import ThreadedMotoServer

    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        port = free_port()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.stop()


def png_bytes(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    """../shared/data/faces, or a skip saying why when this checkout has no shared/ beside it."""
    if not SHARED_FACES.is_dir():
        pytest.skip(f"evaluation photos not found at {SHARED_FACES}")
    return SHARED_FACES


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("models")
    DlibR29Pack.prepare(directory)
    return directory


@pytest.fixture(scope="session")
def settings(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(model_dir=model_dir, data_dir=tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def pack(settings: Settings) -> DlibR29Pack:
    return DlibR29Pack(settings)


@pytest.fixture(scope="session")
def t1_bytes() -> bytes:
    """insightface's group photo: six faces."""
    return insightface_image("t1.jpg").read_bytes()


@pytest.fixture(scope="session")
def astronaut_bytes() -> bytes:
    """scikit-image's `astronaut` (Eileen Collins): one face."""
    from skimage import data

    return png_bytes(data.astronaut())


@pytest.fixture(scope="session")
def server_dirs() -> Iterator[Path]:
    """A directory for embedded servers' data, outside pytest's basetemp.

    As root the server runs as another OS user, and every pytest run started on this machine
    chmods /tmp/pytest-of-root back to 0700, which would lock that user out mid-test.
    """
    with tempfile.TemporaryDirectory(prefix="faceserve-store-tests-") as directory:
        yield Path(directory)


@pytest.fixture(scope="session")
def postgres(server_dirs: Path) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(server_dirs / "shared")
    server.start()
    yield server
    server.stop()
