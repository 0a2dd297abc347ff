"""Settings: defaults, environment, secrets from files, and loud failures on bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.config import ConfigError, load_settings


def test_embedded_default_is_sqlite_under_the_data_dir(tmp_path: Path) -> None:
    settings = load_settings({"AGENTHUB_DATA_DIR": str(tmp_path)})
    assert settings.env == "dev" and settings.is_dev and settings.is_sqlite
    assert settings.database_url == f"sqlite:///{tmp_path / 'hub.db'}"
    assert settings.max_body_bytes == 5 * 1024 * 1024


def test_secret_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "master"
    secret.write_text("a2V5\n")
    settings = load_settings(
        {
            "AGENTHUB_ENV": "prod",
            "AGENTHUB_MASTER_KEY_FILE": str(secret),
            "AGENTHUB_DATA_DIR": str(tmp_path),
        }
    )
    assert settings.master_key == "a2V5" and not settings.is_dev


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"AGENTHUB_ENV": "staging"}, "AGENTHUB_ENV must be one of"),
        ({"AGENTHUB_ENV": "prod"}, "AGENTHUB_MASTER_KEY"),
        ({"AGENTHUB_DATABASE_URL": "mysql://x"}, "AGENTHUB_DATABASE_URL"),
        ({"AGENTHUB_MAX_BODY_BYTES": "lots"}, "must be an integer"),
        ({"AGENTHUB_MAX_BODY_BYTES": "10"}, "at least 1024"),
        ({"AGENTHUB_TRUSTED_PROXIES": "ingress.local"}, "not an IP address"),
        ({"AGENTHUB_MASTER_KEY": "x", "AGENTHUB_MASTER_KEY_FILE": "/x"}, "not both"),
        ({"AGENTHUB_MASTER_KEY_FILE": "/nonexistent/key"}, "cannot read"),
    ],
)
def test_bad_settings_fail_with_the_variable_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(env)


def test_master_key_must_be_32_bytes(tmp_path: Path) -> None:
    from hub.tenancy.keys import load_master_key

    settings = load_settings(
        {
            "AGENTHUB_ENV": "prod",
            "AGENTHUB_MASTER_KEY": "c2hvcnQ=",
            "AGENTHUB_DATA_DIR": str(tmp_path),
        }
    )
    with pytest.raises(ConfigError, match="32 random bytes"):
        load_master_key(settings)


def test_dev_master_key_is_created_once_and_private(tmp_path: Path) -> None:
    from hub.tenancy.keys import load_master_key

    settings = load_settings({"AGENTHUB_DATA_DIR": str(tmp_path)})
    first = load_master_key(settings)
    assert load_master_key(settings) == first and len(first) == 32
    assert (tmp_path / "master.key").stat().st_mode & 0o077 == 0


def test_a_code_list_file_that_cannot_be_read_names_the_variable(tmp_path: Path) -> None:
    from hub.context import build_hub

    settings = load_settings(
        {
            "AGENTHUB_ENV": "test",
            "AGENTHUB_DATA_DIR": str(tmp_path / "data"),
            "AGENTHUB_CODE_LISTS": str(tmp_path / "missing.toml"),
        }
    )
    with pytest.raises(ConfigError, match="AGENTHUB_CODE_LISTS: cannot read"):
        build_hub(settings)
    broken = tmp_path / "broken.toml"
    broken.write_text("exclusion_reasons = [", encoding="utf-8")
    with pytest.raises(ConfigError, match="AGENTHUB_CODE_LISTS"):
        build_hub(settings.with_overrides(code_lists_path=broken))
