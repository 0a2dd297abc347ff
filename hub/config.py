"""Settings from ``AGENTHUB_*`` environment variables, checked once at start with clear messages.

Every value has a typed reader that fails loudly on a bad value; a secret may be given as
``NAME_FILE`` (a path to a file holding it) instead of ``NAME``, so secrets need not sit in the
environment of every process.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ENVIRONMENTS = ("dev", "test", "sit", "qa", "prod")

# The web process under gunicorn, for ``agenthub serve`` and deploy/gunicorn.conf.py alike.
WEB_WORKERS = 4
WEB_THREADS = 8
# The platform abandons a producer call after 29 s; gunicorn abandons a request a second before.
WEB_REQUEST_TIMEOUT_SECONDS = 28
WEB_KEEPALIVE_SECONDS = 30
# A request's headers and body must be in within this many seconds of its first byte, or the
# client is answered 408 (headers) or a fault (body) and cut off (hub/web/gthread.py). The
# platform sends a whole request at once; a client that trickles holds a thread no longer.
WEB_READ_TIMEOUT_SECONDS = 10


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


def _raw(env: Mapping[str, str], name: str) -> str | None:
    if name in env and f"{name}_FILE" in env:
        raise ConfigError(f"set {name} or {name}_FILE, not both")
    if f"{name}_FILE" in env:
        path = Path(env[f"{name}_FILE"])
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{name}_FILE: cannot read {path}: {exc.strerror}") from None
    return env.get(name)


def env_str(env: Mapping[str, str], name: str, default: str) -> str:
    """Return a string setting or its default."""
    value = _raw(env, name)
    return default if value is None or value == "" else value


def env_int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    """Return an integer setting; refuse non-integers and values below ``minimum``."""
    value = _raw(env, name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {value!r}") from None
    if number < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {number}")
    return number


def env_list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Return a comma-separated list setting (empty entries dropped)."""
    value = _raw(env, name) or ""
    return tuple(part.strip() for part in value.split(",") if part.strip())


def env_choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    """Return a setting that must be one of ``choices``."""
    value = env_str(env, name, default).lower()
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


@dataclass(frozen=True)
class Settings:
    """The hub's settings. Build with :func:`load_settings`; tests use :meth:`with_overrides`."""

    env: str
    data_dir: Path
    database_url: str
    master_key: str | None = None
    public_url: str | None = None
    # HSA-ids of consumers allowed to call the producer (the platform's, in production).
    allowed_consumers: tuple[str, ...] = ()
    # Addresses of the TLS ingress whose client-certificate header we trust.
    trusted_proxies: tuple[str, ...] = ("127.0.0.1", "::1")
    cert_header: str = "X-SSL-Client-Cert"
    max_body_bytes: int = 5 * 1024 * 1024
    log_level: str = "INFO"
    # "text" for a terminal, "json" (one object per line) for the journal (deploy/).
    log_format: str = "text"
    code_lists_path: Path | None = None
    # The web workspace's sign-in (docs/web.md): a session ends after this long without a
    # request, and in any case this long after sign-in.
    session_idle_minutes: int = 30
    session_lifetime_hours: int = 12
    # This many failed sign-ins in a row (a wrong password or code) lock the account for
    # login_lockout_minutes.
    login_max_failures: int = 5
    login_lockout_minutes: int = 15
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_dev(self) -> bool:
        """True on a developer's machine or in tests, where loopback callers need no certificate."""
        return self.env in ("dev", "test")

    @property
    def is_sqlite(self) -> bool:
        """True on the embedded default: one SQLite file for the hub, one per region."""
        return self.database_url.startswith("sqlite")

    def with_overrides(self, **changes: Any) -> Settings:
        """Return a copy with some fields replaced (test configuration)."""
        return replace(self, **changes)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and check every ``AGENTHUB_*`` setting; raise :class:`ConfigError` on the first bad."""
    env = os.environ if env is None else env
    environment = env_choice(env, "AGENTHUB_ENV", "dev", ENVIRONMENTS)
    data_dir = Path(env_str(env, "AGENTHUB_DATA_DIR", "var")).expanduser().resolve()
    default_db = f"sqlite:///{data_dir / 'hub.db'}"
    database_url = env_str(env, "AGENTHUB_DATABASE_URL", default_db)
    if not database_url.startswith(("sqlite:///", "postgresql")):
        raise ConfigError(
            "AGENTHUB_DATABASE_URL must be sqlite:///<path> or postgresql+psycopg2://…, "
            f"got scheme {database_url.split(':', 1)[0]!r}"
        )
    master_key = _raw(env, "AGENTHUB_MASTER_KEY")
    if environment not in ("dev", "test") and not master_key:
        raise ConfigError(
            "AGENTHUB_MASTER_KEY (or AGENTHUB_MASTER_KEY_FILE) is required outside dev/test: "
            "it wraps every region's data key"
        )
    proxies = env_list(env, "AGENTHUB_TRUSTED_PROXIES") or ("127.0.0.1", "::1")
    for proxy in proxies:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise ConfigError(f"AGENTHUB_TRUSTED_PROXIES: {proxy!r} is not an IP address") from None
    code_lists = _raw(env, "AGENTHUB_CODE_LISTS")
    return Settings(
        env=environment,
        data_dir=data_dir,
        database_url=database_url,
        master_key=master_key,
        public_url=_raw(env, "AGENTHUB_PUBLIC_URL"),
        allowed_consumers=env_list(env, "AGENTHUB_ALLOWED_CONSUMERS"),
        trusted_proxies=proxies,
        cert_header=env_str(env, "AGENTHUB_CERT_HEADER", "X-SSL-Client-Cert"),
        max_body_bytes=env_int(env, "AGENTHUB_MAX_BODY_BYTES", 5 * 1024 * 1024, minimum=1024),
        log_level=env_choice(
            env, "AGENTHUB_LOG_LEVEL", "info", ("debug", "info", "warning", "error")
        ).upper(),
        log_format=env_choice(env, "AGENTHUB_LOG_FORMAT", "text", ("text", "json")),
        code_lists_path=Path(code_lists) if code_lists else None,
        session_idle_minutes=env_int(env, "AGENTHUB_SESSION_IDLE_MINUTES", 30, minimum=1),
        session_lifetime_hours=env_int(env, "AGENTHUB_SESSION_LIFETIME_HOURS", 12, minimum=1),
        login_max_failures=env_int(env, "AGENTHUB_LOGIN_MAX_FAILURES", 5, minimum=1),
        login_lockout_minutes=env_int(env, "AGENTHUB_LOGIN_LOCKOUT_MINUTES", 15, minimum=1),
    )
