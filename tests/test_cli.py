"""The command line without a server: detect, compare, models."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from serve_app import cli
from serve_app.service import thresholds

from .conftest import insightface_image


@pytest.fixture(autouse=True)
def _model_dir(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACESERVE_MODEL_DIR", str(model_dir))


def test_detect_prints_six_faces_for_t1(capsys) -> None:
    assert cli.main(["detect", str(insightface_image("t1.jpg"))]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["image"] == {"width": 1280, "height": 886}
    assert out["model_version"] == "dlib-r29:1"
    assert len(out["faces"]) == 6
    face = out["faces"][0]
    assert set(face) == {"bounding_box", "landmarks", "confidence", "quality"}
    assert len(face["landmarks"]) == 5
    assert set(face["quality"]) == {"sharpness", "brightness", "face_size", "pose"}


def test_compare_same_and_different_people(faces_dir: Path, capsys) -> None:
    people = faces_dir / "people" / "face_recognition"
    obama = [str(people / "obama" / "obama.jpg"), str(people / "obama" / "obama2.jpg")]
    assert cli.main(["compare", *obama]) == 0
    same = json.loads(capsys.readouterr().out)
    assert same["match"] is True and same["similarity"] >= thresholds.COMPARE
    assert cli.main(["compare", obama[0], str(people / "biden" / "biden.jpg")]) == 0
    different = json.loads(capsys.readouterr().out)
    assert different["match"] is False and different["similarity"] < thresholds.COMPARE


def test_compare_without_a_face_is_a_clear_error(faces_dir: Path, capsys) -> None:
    dogs = str(faces_dir / "no_faces" / "dlib" / "dogs.jpg")
    assert cli.main(["compare", str(insightface_image("t1.jpg")), dogs]) == 2
    assert "no face detected in the target image" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"hello, I am a text file", "not a recognised image"), (b"", "empty")],
)
def test_detect_rejects_bad_files(tmp_path: Path, capsys, content: bytes, message: str) -> None:
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    assert cli.main(["detect", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err


def test_missing_file_and_bad_threshold(capsys) -> None:
    assert cli.main(["detect", "/nonexistent.jpg"]) == 2
    assert "cannot read /nonexistent.jpg" in capsys.readouterr().err
    t1 = str(insightface_image("t1.jpg"))
    assert cli.main(["compare", t1, t1, "--threshold", "150"]) == 2
    assert "between 0 and 100" in capsys.readouterr().err


def test_models_list_and_prepare(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("FACESERVE_MODEL_DIR", str(tmp_path))
    assert cli.main(["models", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["dlib-r29"]["prepared"] is False and rows["dlib-r29"]["offline"] is True
    assert "non-commercial" in rows["buffalo_l"]["license"]
    assert cli.main(["models", "prepare"]) == 0
    assert "dlib-r29: ready" in capsys.readouterr().out
    assert cli.main(["models", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["prepared"] is True


def test_console_script_is_installed() -> None:
    """`faceserve` is on PATH of the venv (installed by pyproject's console script)."""
    script = Path(sys.executable).parent / "faceserve"
    assert script.exists(), "run `make install` (pip install -e .) first"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and "detect" in result.stdout


def test_models_pull_offline_fails_clearly(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("FACESERVE_INSIGHTFACE_URL", "http://127.0.0.1:9/{name}.zip")
    assert cli.main(["models", "pull", "buffalo_l"]) == 2
    err = capsys.readouterr().err
    assert "non-commercial research only" in err
    assert "error: downloading model pack buffalo_l" in err and "127.0.0.1:9" in err
