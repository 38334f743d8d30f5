"""Access keys and the auth mode from FACESERVE_* settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from serve_app.config import Settings
from serve_app.errors import InvalidParameter


def test_keys_from_the_variable_and_a_file(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text("# team keys\nAKIAFILE1:secret/one\n\nAKIAFILE2:secret+two, AKIAFILE3:x\n")
    settings = Settings.from_env(
        {
            "FACESERVE_AWS_KEYS": "AKIAENV1:env-secret,AKIAENV2:other",
            "FACESERVE_AWS_KEYS_FILE": str(keys_file),
            "FACESERVE_S3_ENDPOINT_URL": "http://minio:9000",
        }
    )
    config = settings.rekognition
    assert config.keys == {
        "AKIAENV1": "env-secret",
        "AKIAENV2": "other",
        "AKIAFILE1": "secret/one",
        "AKIAFILE2": "secret+two",
        "AKIAFILE3": "x",
    }
    assert (config.auth, config.s3_endpoint_url, config.region) == (
        "sigv4",
        "http://minio:9000",
        "us-east-1",
    )
    # Secrets stay out of reprs (and so out of logs).
    assert "env-secret" not in repr(settings) and "secret/one" not in repr(config)


def test_no_keys_by_default() -> None:
    config = Settings.from_env({}).rekognition
    assert config.keys == {} and config.auth == "sigv4"


@pytest.mark.parametrize("value", ["AKIAONLY", "AKIA:", ":secret", "A:s,B"])
def test_malformed_keys_are_refused_without_echoing_them(value: str) -> None:
    with pytest.raises(InvalidParameter) as caught:
        _ = Settings.from_env({"FACESERVE_AWS_KEYS": value}).rekognition
    assert "KEY_ID:SECRET" in caught.value.message and "secret" not in caught.value.message


def test_the_auth_mode_and_keys_file_are_checked(tmp_path: Path) -> None:
    assert Settings.from_env({"FACESERVE_AWS_AUTH": "disabled"}).rekognition.auth == "disabled"
    with pytest.raises(InvalidParameter, match="sigv4, disabled"):
        _ = Settings.from_env({"FACESERVE_AWS_AUTH": "none"}).rekognition
    with pytest.raises(InvalidParameter, match="FACESERVE_AWS_KEYS_FILE"):
        _ = Settings.from_env({"FACESERVE_AWS_KEYS_FILE": str(tmp_path / "absent")}).rekognition
