"""The second factor: time-based one-time codes (RFC 6238, pyotp), sealed with the master key.

A user's TOTP secret is made when the account is made (``agenthub user add`` prints it once,
with an ``otpauth://`` address for an authenticator app) and kept only sealed by the hub's
master key, bound to the login. A code is accepted for the current 30-second step or one step
either side (clock drift), and only once: the step of the last code accepted is kept, and a code
of that step or an earlier one is refused (RFC 6238, section 5.2).
"""

from __future__ import annotations

import hmac
import re
from datetime import datetime, timedelta

import pyotp

from hub.tenancy.keys import KeyStore

#: The issuer an authenticator app shows beside the login.
ISSUER = "agenthub"
#: Steps either side of now that are still accepted.
DRIFT_STEPS = 1
_CODE_RE = re.compile(r"[0-9]{6}")


def new_secret() -> str:
    """A fresh random TOTP secret (base32, 160 bits)."""
    return pyotp.random_base32(32)


def provisioning_uri(secret: str, login: str) -> str:
    """The ``otpauth://`` address that enrols ``secret`` in an authenticator app."""
    return pyotp.TOTP(secret).provisioning_uri(name=login, issuer_name=ISSUER)


def _purpose(login: str) -> str:
    return f"totp:{login}"


def seal_secret(keys: KeyStore, login: str, secret: str) -> bytes:
    """``secret`` sealed with the master key, bound to ``login``."""
    return keys.seal(secret.encode(), _purpose(login))


def open_secret(keys: KeyStore, login: str, sealed: bytes) -> str:
    """The secret :func:`seal_secret` sealed for ``login``."""
    return keys.open(sealed, _purpose(login)).decode()


def normalise(code: str) -> str:
    """A code as typed (``123 456``, ``123-456``) without its separators."""
    return re.sub(r"[\s-]", "", code)


def accepted_step(secret: str, code: str, now: datetime, last_step: int | None) -> int | None:
    """The time step ``code`` is the code of, if it may be accepted now; else None.

    Every step of the window is compared (in constant time), so the answer's timing does not
    say which step matched.
    """
    code = normalise(code)
    if not _CODE_RE.fullmatch(code):
        return None
    totp = pyotp.TOTP(secret)
    matched: int | None = None
    for offset in range(-DRIFT_STEPS, DRIFT_STEPS + 1):
        moment = now + timedelta(seconds=offset * totp.interval)
        if hmac.compare_digest(totp.at(moment), code):
            matched = totp.timecode(moment)
    if matched is None or (last_step is not None and matched <= last_step):
        return None
    return matched


def code_at(secret: str, now: datetime) -> str:
    """The code of ``secret`` at ``now`` (what an authenticator app shows; for tests and demo)."""
    return pyotp.TOTP(secret).at(now)
