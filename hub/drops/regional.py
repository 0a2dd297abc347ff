"""Open a member region's drop from the registry, with secrets resolved outside the database.

``drop_for_region(hub, region) -> Drop`` builds a region's drop; jobs get theirs through
:func:`hub.drops.session.region_drop`, which adds the backoff and records the outcome.

Where the drop is (``regions.drop_url``):

* none — the embedded default: a folder ``<data dir>/drops/<län>``;
* a path or ``file:///path`` — a folder (a local disk or a mounted share);
* ``sftp://user@host[:port]/base/path`` — the region's SFTP server.

``regions.drop_settings`` (JSON; from ``drop_settings`` in a region's TOML file) holds no
secret, only where to find one — the database and its backups must never hold a password:

=================================  =========================================================
key                                meaning
=================================  =========================================================
``host_key``                       pinned host key(s), text (public keys are not secrets)
``host_key_file``                  … or a file holding them (known_hosts or .pub lines)
``password_file``                  file whose content (stripped) is the SFTP password
``password_env``                   … or the name of an environment variable holding it
``private_key_file``               an OpenSSH/PEM private key file
``private_key_passphrase_file``    file holding the key's passphrase
``private_key_passphrase_env``     … or an environment variable holding it
``connect_timeout``                seconds (default 10)
``read_timeout``                   seconds (default 30)
``file_mode``                      folder drops: mode of written files, octal text ("0640")
``connections``                    parallel connections a delivery run may open (default 4)
=================================  =========================================================

Relative file paths are relative to the hub's data folder. Inline secrets (``password``,
``private_key``, ``passphrase`` …) are refused with :class:`DropConfigError`, as is any key not
in the table (a typo must not silently drop a setting). Errors here are
:class:`~hub.drops.base.DropError` with ``permanent=True``: configuration does not fix itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hub.context import Hub
from hub.drops import open_drop
from hub.drops.base import Drop, DropError
from hub.drops.local import LocalDrop
from hub.drops.sftp import SftpSettings
from hub.tenancy.registry import MemberRegion

KNOWN_KEYS = frozenset(
    {
        "host_key",
        "host_key_file",
        "password_file",
        "password_env",
        "private_key_file",
        "private_key_passphrase_file",
        "private_key_passphrase_env",
        "connect_timeout",
        "read_timeout",
        "file_mode",
        "connections",
    }
)
INLINE_SECRETS = frozenset(
    {"password", "private_key", "private_key_pem", "passphrase", "private_key_passphrase"}
)


class DropConfigError(DropError):
    """A region's drop configuration is unusable; an operator must change it."""

    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=True)


def default_drop_path(hub: Hub, lan_code: str) -> Path:
    """The embedded default drop folder of a region without a configured drop."""
    return hub.settings.data_dir / "drops" / lan_code


def local_drop_url(hub: Hub, url: str) -> str:
    """A folder drop given as a relative path lives under the data folder (regions/README.md)."""
    if "://" in url or Path(url).expanduser().is_absolute():
        return url
    return str(hub.settings.data_dir / url)


def drop_location(hub: Hub, region: MemberRegion) -> str:
    """Where the region's drop is, for operators: never contains a secret."""
    if not region.drop_url:
        return str(default_drop_path(hub, region.lan_code))
    if "://" not in region.drop_url:
        return local_drop_url(hub, region.drop_url)
    parts = urllib.parse.urlsplit(region.drop_url)
    if parts.password is not None:  # refused when opened, but never echo it either
        netloc = parts.netloc.split("@", 1)[1]
        return urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username}:***@{netloc}"))
    return region.drop_url


def drop_config_hash(region: MemberRegion) -> str:
    """A fingerprint of the drop configuration (URL and settings; secrets are only references).

    Stored with a failure so that a changed configuration is tried at once (see
    :mod:`hub.drops.state`).
    """
    text = json.dumps(
        {"url": region.drop_url, "settings": region.drop_settings}, sort_keys=True, default=str
    )
    return hashlib.sha256(text.encode()).hexdigest()


def _path(hub: Hub, value: Any, key: str, lan_code: str) -> Path:
    if not isinstance(value, str) or not value:
        raise DropConfigError(f"region {lan_code}: drop_settings.{key} must be a path")
    path = Path(value).expanduser()
    return path if path.is_absolute() else hub.settings.data_dir / path


def _read_secret_file(hub: Hub, value: Any, key: str, lan_code: str) -> str:
    path = _path(hub, value, key, lan_code)
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise DropConfigError(
            f"region {lan_code}: drop_settings.{key}: cannot read {path}: {exc.strerror}"
        ) from None


def _secret(
    hub: Hub, settings: Mapping[str, Any], lan_code: str, file_key: str, env_key: str
) -> str | None:
    if file_key in settings and env_key in settings:
        raise DropConfigError(f"region {lan_code}: set {file_key} or {env_key}, not both")
    if file_key in settings:
        return _read_secret_file(hub, settings[file_key], file_key, lan_code)
    if env_key in settings:
        name = settings[env_key]
        if not isinstance(name, str) or name not in os.environ:
            raise DropConfigError(
                f"region {lan_code}: drop_settings.{env_key}: environment variable "
                f"{name!r} is not set"
            )
        return os.environ[name]
    return None


def _seconds(settings: Mapping[str, Any], key: str, default: float, lan_code: str) -> float:
    value = settings.get(key, default)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DropConfigError(f"region {lan_code}: drop_settings.{key} must be seconds") from None
    if number <= 0:
        raise DropConfigError(f"region {lan_code}: drop_settings.{key} must be positive")
    return number


def check_drop_settings(region: MemberRegion) -> None:
    """Refuse inline secrets and unknown keys in ``drop_settings``."""
    keys = set(region.drop_settings)
    inline = sorted(keys & INLINE_SECRETS)
    if inline:
        raise DropConfigError(
            f"region {region.lan_code}: drop_settings must not hold secrets ({', '.join(inline)});"
            " use password_file / password_env / private_key_file instead"
        )
    unknown = sorted(keys - KNOWN_KEYS)
    if unknown:
        raise DropConfigError(
            f"region {region.lan_code}: unknown drop_settings key(s): {', '.join(unknown)}"
        )


def sftp_settings_for(hub: Hub, region: MemberRegion) -> SftpSettings:
    """Build the SFTP settings of a region, reading its secrets from files or the environment."""
    check_drop_settings(region)
    s = region.drop_settings
    lan = region.lan_code
    if "host_key" in s and "host_key_file" in s:
        raise DropConfigError(f"region {lan}: set host_key or host_key_file, not both")
    host_key: str | None
    if "host_key_file" in s:
        host_key = _read_secret_file(hub, s["host_key_file"], "host_key_file", lan)
    else:
        value = s.get("host_key")
        if value is not None and not isinstance(value, str):
            raise DropConfigError(f"region {lan}: drop_settings.host_key must be text")
        host_key = value
    key_path = (
        _path(hub, s["private_key_file"], "private_key_file", lan)
        if "private_key_file" in s
        else None
    )
    try:
        return SftpSettings(
            password=_secret(hub, s, lan, "password_file", "password_env"),
            private_key_path=key_path,
            private_key_passphrase=_secret(
                hub, s, lan, "private_key_passphrase_file", "private_key_passphrase_env"
            ),
            host_key=host_key,
            connect_timeout=_seconds(s, "connect_timeout", 10.0, lan),
            read_timeout=_seconds(s, "read_timeout", 30.0, lan),
        )
    except ValueError as exc:  # a host key pin that cannot be parsed, and the like
        raise DropConfigError(f"region {lan}: {exc}") from None


def drop_for_region(hub: Hub, region: MemberRegion) -> Drop:
    """The region's drop, not yet connected (SFTP connects on first use, once per run).

    Raises :class:`DropConfigError` when the configuration cannot work (bad URL, missing secret
    file, inline secret, unparseable host key pin).
    """
    check_drop_settings(region)
    url = region.drop_url
    if not url:
        return LocalDrop(default_drop_path(hub, region.lan_code), **_file_mode(region))
    try:
        if urllib.parse.urlsplit(url).scheme == "sftp":
            return open_drop(url, sftp_settings_for(hub, region))
        drop = open_drop(local_drop_url(hub, url))
    except DropError:
        raise
    except ValueError as exc:
        raise DropConfigError(f"region {region.lan_code}: {exc}") from None
    if isinstance(drop, LocalDrop) and "file_mode" in region.drop_settings:
        drop = LocalDrop(drop.root, **_file_mode(region))
    return drop


def _file_mode(region: MemberRegion) -> dict[str, int]:
    if "file_mode" not in region.drop_settings:
        return {}
    value = region.drop_settings["file_mode"]
    try:
        mode = int(str(value), 8)
    except ValueError:
        raise DropConfigError(
            f"region {region.lan_code}: drop_settings.file_mode must be octal text like '0640'"
        ) from None
    if mode & 0o007:
        # Received files hold personal data: never readable by every local user.
        raise DropConfigError(f"region {region.lan_code}: file_mode must not grant 'other' access")
    return {"file_mode": mode}
