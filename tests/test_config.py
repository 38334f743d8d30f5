"""Settings from FACESERVE_* variables: defaults, parsing, overrides, and a clear error at
start for a value that cannot be its setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from serve_app import cli
from serve_app.config import ImageLimits, InvalidSetting, Settings
from serve_app.errors import InvalidParameter


def test_defaults_make_the_embedded_setup_work() -> None:
    settings = Settings.from_env({})
    assert (settings.host, settings.port, settings.database_url) == ("127.0.0.1", 8000, "")
    assert settings.model_pack == "dlib-r29"
    assert settings.image_limits == ImageLimits()
    assert settings.embed_flip is True and settings.store_images is False
    assert settings.data_dir.name == "faceserve"


def test_variables_are_parsed_to_their_types_and_empty_means_unset() -> None:
    settings = Settings.from_env(
        {
            "FACESERVE_PORT": "9001",
            "FACESERVE_EMBED_FLIP": "off",
            "FACESERVE_STORE_IMAGES": "yes",
            "FACESERVE_DETECT_MIN_CONFIDENCE": "72.5",
            "FACESERVE_MAX_IMAGE_BYTES": "1024",
            "FACESERVE_MODEL_DIR": "~/models",
            "FACESERVE_HOST": "",
            "OTHER_PORT": "1",
        }
    )
    assert settings.port == 9001
    assert (settings.embed_flip, settings.store_images) == (False, True)
    assert settings.detect_min_confidence == 72.5
    assert settings.image_limits.max_bytes == 1024
    assert settings.model_dir == Path("~/models").expanduser()
    assert settings.host == "127.0.0.1"


def test_keyword_overrides_win_over_the_environment() -> None:
    env = {"FACESERVE_PORT": "9001", "FACESERVE_HOST": "0.0.0.0"}
    settings = Settings.from_env(env, port=7000, data_dir="/tmp/x")
    assert (settings.port, settings.host, settings.data_dir) == (7000, "0.0.0.0", Path("/tmp/x"))


def test_os_environ_is_read_when_no_mapping_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACESERVE_EMBED_BATCH_SIZE", "7")
    assert Settings.from_env().embed_batch_size == 7
    assert Settings.from_env({}).embed_batch_size == 32


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("FACESERVE_PORT", "abc", "FACESERVE_PORT='abc' is not a valid integer"),
        ("FACESERVE_EMBED_THREADS", "2.5", "FACESERVE_EMBED_THREADS='2.5' is not a valid integer"),
        ("FACESERVE_EMBED_FLIP", "maybe", "FACESERVE_EMBED_FLIP='maybe' is not a valid boolean"),
        (
            "FACESERVE_PINECONE_REPAIR_INTERVAL_S",
            "soon",
            "FACESERVE_PINECONE_REPAIR_INTERVAL_S='soon' is not a valid number",
        ),
    ],
)
def test_a_bad_value_is_an_error_naming_the_variable(
    variable: str, value: str, message: str
) -> None:
    with pytest.raises(InvalidParameter) as caught:
        Settings.from_env({variable: value})
    assert isinstance(caught.value, InvalidSetting)
    assert str(caught.value.message).startswith(message)


def test_bad_and_unknown_overrides_are_errors() -> None:
    with pytest.raises(InvalidSetting, match="port='abc' is not a valid integer"):
        Settings.from_env({}, port="abc")
    with pytest.raises(InvalidSetting, match="unknown setting 'prot'"):
        Settings.from_env({}, prot=1)


def test_settings_are_frozen_and_keep_secrets_out_of_their_repr() -> None:
    settings = Settings(pinecone_api_key="pc-secret", aws_keys="AKIA1:aws-secret")
    assert "secret" not in repr(settings)
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen-instance error
        settings.port = 1  # type: ignore[misc]


def test_the_cli_reports_a_bad_variable_at_start(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("FACESERVE_DETECT_MAX_SIDE", "big")
    image = tmp_path / "x.jpg"
    image.write_bytes(b"")
    assert cli.main(["detect", str(image)]) == 2
    err = capsys.readouterr().err
    assert "FACESERVE_DETECT_MAX_SIDE='big' is not a valid integer" in err
