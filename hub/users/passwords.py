"""Passwords: Argon2id hashes (argon2-cffi), and the same cost for a login that does not exist.

argon2-cffi's defaults are RFC 9106's second recommended profile (Argon2id, t=3, m=64 MiB,
p=4). A sign-in with an unknown login, a locked account or an account without a password still
verifies one hash (:func:`verify_nothing`), so how long the answer takes tells nothing.
"""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

#: Shorter passwords are refused when an account is made or its password set.
MIN_PASSWORD_LENGTH = 12
#: Longer ones too: hashing megabytes is a way to tie up the web process.
MAX_PASSWORD_LENGTH = 1024

_hasher = PasswordHasher()


class WeakPassword(ValueError):
    """A new password does not meet the policy; the text says why (never the password)."""


def check_policy(password: str) -> None:
    """Raise :class:`WeakPassword` unless ``password`` may be set."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(f"a password has at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise WeakPassword(f"a password has at most {MAX_PASSWORD_LENGTH} characters")
    if password.strip() != password or not password.strip():
        raise WeakPassword("a password neither starts nor ends with white space")


def hash_password(password: str) -> str:
    """The Argon2id hash of a password that meets the policy."""
    check_policy(password)
    return _hasher.hash(password)


_dummy: tuple[PasswordHasher, str] | None = None


def _dummy_hash() -> str:
    # A hash of a random password nobody knows, made with the same parameters as real ones
    # (made again should the hasher change: tests run with cheaper parameters).
    global _dummy
    if _dummy is None or _dummy[0] is not _hasher:
        _dummy = (_hasher, _hasher.hash(secrets.token_urlsafe(24)))
    return _dummy[1]


def verify_nothing(password: str) -> None:
    """Spend what one verification costs, for a sign-in that fails whatever the password."""
    verify(_dummy_hash(), password)


def verify(stored_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``stored_hash`` (False for a malformed hash)."""
    if len(password) > MAX_PASSWORD_LENGTH:
        # No password that long was ever set: spend the same time and fail.
        password = secrets.token_urlsafe(24)
    try:
        return _hasher.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    """Whether a hash was made with other parameters than today's (rehash at the next sign-in)."""
    try:
        return _hasher.check_needs_rehash(stored_hash)
    except InvalidHashError:
        return True
