"""Per-region keys: personal data in a region's store is sealed with that region's own key.

Each region has a random 256-bit data key, stored only wrapped (AES-GCM) by the hub's master key.
Destroying the wrapped key (``destroy_region_key``) makes every byte the region stored unreadable,
in the database and in every backup of it (crypto-shredding). Lookups use a keyed hash derived from
the data key, so the clear personnummer is never an index.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Connection, select, update

from hub.clock import utcnow
from hub.config import ConfigError, Settings
from hub.contract.personnummer import mask
from hub.db.hub_tables import region_keys

_NONCE = 12
_VERSION = b"\x01"  # AES-GCM of the plaintext
# AES-GCM of the plaintext compressed with zlib: written by earlier versions for message bodies
# and fields, still opened. Deflating was a visible share of the producer's CPU on every call;
# rows now stay out of TOAST by the table's toast_tuple_target instead (migration region0004).
_VERSION_DEFLATED = b"\x02"


class KeyDestroyed(LookupError):
    """The region's key was destroyed (agreement ended): its data can no longer be read."""


def load_master_key(settings: Settings) -> bytes:
    """Return the 32-byte master key; in dev/test create one in the data folder on first use."""
    if settings.master_key:
        try:
            key = base64.b64decode(settings.master_key, validate=True)
        except ValueError:
            raise ConfigError("AGENTHUB_MASTER_KEY must be base64 of 32 random bytes") from None
        if len(key) != 32:
            raise ConfigError("AGENTHUB_MASTER_KEY must be base64 of 32 random bytes")
        return key
    if not settings.is_dev:
        raise ConfigError("AGENTHUB_MASTER_KEY is required outside dev/test")
    path: Path = settings.data_dir / "master.key"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return base64.b64decode(path.read_bytes().strip())
    with os.fdopen(fd, "wb") as handle:
        handle.write(base64.b64encode(os.urandom(32)))
    return base64.b64decode(path.read_bytes().strip())


@dataclass(frozen=True)
class RegionCipher:
    """Seal, open and hash personal data with one region's key."""

    lan_code: str
    _aead: AESGCM
    _hash_key: bytes

    def seal(self, plaintext: bytes, purpose: str) -> bytes:
        """Encrypt; ``purpose`` (e.g. "pnr", "body") is bound in, so fields cannot be swapped."""
        nonce = os.urandom(_NONCE)
        aad = f"{self.lan_code}:{purpose}".encode()
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, aad)

    def open(self, sealed: bytes, purpose: str) -> bytes:
        """Decrypt what :meth:`seal` produced for the same region and purpose (or, deflated, an
        earlier version)."""
        version = sealed[:1]
        if version not in (_VERSION, _VERSION_DEFLATED):
            raise ValueError("unknown sealed-data version")
        nonce, body = sealed[1 : 1 + _NONCE], sealed[1 + _NONCE :]
        plaintext = self._aead.decrypt(nonce, body, f"{self.lan_code}:{purpose}".encode())
        return zlib.decompress(plaintext) if version == _VERSION_DEFLATED else plaintext

    def keyed_hash(self, value: str | bytes) -> str:
        """HMAC-SHA256 under the region's hash key: equal inputs match, nothing can be guessed."""
        data = value.encode() if isinstance(value, str) else value
        return hmac.new(self._hash_key, data, hashlib.sha256).hexdigest()


#: What a list shows for a personnummer its region's key can no longer open.
UNREADABLE = "(unreadable)"


def masked_personnummer(cipher: RegionCipher, sealed: bytes) -> str:
    """The masked personnummer in ``sealed``; :data:`UNREADABLE` when the key cannot open it.

    A row sealed under a key that was since destroyed (or replaced) must show as what it is in
    a list, not end the listing of every other row.
    """
    try:
        return mask(cipher.open(sealed, "pnr").decode())
    except (InvalidTag, ValueError):
        return UNREADABLE


def _secret_aad(purpose: str) -> bytes:
    # Its own prefix: a sealed secret is never mistaken for a wrapped region key (region-key:…).
    return f"hub-secret:{purpose}".encode()


def _derive(data_key: bytes, lan_code: str) -> RegionCipher:
    hash_key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=f"hash:{lan_code}".encode()
    ).derive(data_key)
    return RegionCipher(lan_code, AESGCM(data_key), hash_key)


class KeyStore:
    """Creates, unwraps (and caches) and destroys region keys held in ``hub.region_keys``."""

    def __init__(self, master_key: bytes) -> None:
        self._master = AESGCM(master_key)
        self._master_key = master_key
        self._cache: dict[str, RegionCipher] = {}
        self._lock = threading.Lock()

    def seal(self, plaintext: bytes, purpose: str) -> bytes:
        """Encrypt a hub secret (a user's TOTP secret) under the master key, bound to
        ``purpose`` (e.g. ``totp:alice``) so one sealed value cannot stand in for another."""
        nonce = os.urandom(_NONCE)
        return _VERSION + nonce + self._master.encrypt(nonce, plaintext, _secret_aad(purpose))

    def open(self, sealed: bytes, purpose: str) -> bytes:
        """Decrypt what :meth:`seal` produced for the same ``purpose``; raises
        :class:`cryptography.exceptions.InvalidTag` for anything else."""
        if sealed[:1] != _VERSION:
            raise ValueError("unknown sealed-data version")
        nonce, body = sealed[1 : 1 + _NONCE], sealed[1 + _NONCE :]
        return self._master.decrypt(nonce, body, _secret_aad(purpose))

    def derive(self, purpose: str) -> bytes:
        """A 32-byte key for ``purpose`` derived from the master key: the same on every node
        (the web app's signing key for CSRF tokens), never the master key itself."""
        return HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=f"hub-derived:{purpose}".encode()
        ).derive(self._master_key)

    def create(self, connection: Connection, lan_code: str) -> None:
        """Give a region a fresh data key (no-op if it already has a live one)."""
        row = connection.execute(
            select(region_keys.c.wrapped_key).where(region_keys.c.lan_code == lan_code)
        ).first()
        if row is not None and row.wrapped_key is not None:
            return
        data_key = AESGCM.generate_key(bit_length=256)
        nonce = os.urandom(_NONCE)
        wrapped = nonce + self._master.encrypt(nonce, data_key, f"region-key:{lan_code}".encode())
        now = utcnow()
        if row is None:
            connection.execute(
                region_keys.insert().values(lan_code=lan_code, wrapped_key=wrapped, created_at=now)
            )
        else:
            connection.execute(
                update(region_keys)
                .where(region_keys.c.lan_code == lan_code)
                .values(wrapped_key=wrapped, created_at=now, destroyed_at=None)
            )

    def cached(self, lan_code: str) -> RegionCipher | None:
        """The region's cipher if this process already unwrapped its key (no database access)."""
        with self._lock:
            return self._cache.get(lan_code)

    def cipher(self, connection: Connection, lan_code: str) -> RegionCipher:
        """Return the region's cipher, unwrapping its key on first use."""
        cached = self.cached(lan_code)
        if cached is not None:
            return cached
        row = connection.execute(
            select(region_keys.c.wrapped_key).where(region_keys.c.lan_code == lan_code)
        ).first()
        if row is None or row.wrapped_key is None:
            raise KeyDestroyed(f"region {lan_code} has no key")
        wrapped: bytes = row.wrapped_key
        data_key = self._master.decrypt(
            wrapped[:_NONCE], wrapped[_NONCE:], f"region-key:{lan_code}".encode()
        )
        cipher = _derive(data_key, lan_code)
        with self._lock:
            self._cache[lan_code] = cipher
        return cipher

    def destroy(self, connection: Connection, lan_code: str) -> None:
        """Erase the region's wrapped key: its stored personal data becomes unreadable for good."""
        connection.execute(
            update(region_keys)
            .where(region_keys.c.lan_code == lan_code)
            .values(wrapped_key=None, destroyed_at=utcnow())
        )
        self.forget(lan_code)

    def forget(self, lan_code: str) -> None:
        """Drop the cached cipher (another node destroyed the key, or tests)."""
        with self._lock:
            self._cache.pop(lan_code, None)
