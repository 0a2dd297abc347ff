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
from datetime import datetime
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Connection, select, update

from hub.clock import as_utc, utcnow
from hub.config import ConfigError, Settings
from hub.contract.personnummer import mask
from hub.db.engines import make_private_dir
from hub.db.hub_tables import region_keys

_NONCE = 12
_VERSION = b"\x01"  # AES-GCM of the plaintext
# AES-GCM of the plaintext compressed with zlib: written by earlier versions for message bodies
# and fields, still opened. Deflating was a visible share of the producer's CPU on every call;
# rows now stay out of TOAST by the table's toast_tuple_target instead (migration region0004).
_VERSION_DEFLATED = b"\x02"


class KeyDestroyed(LookupError):
    """The region's key was destroyed (agreement ended): its data can no longer be read."""


class Unreadable(ValueError):
    """Sealed data the region's key cannot open: sealed under a key since destroyed or replaced
    (``region reinstate`` gives a region a new key), or damaged. The text names no value."""


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
    make_private_dir(settings.data_dir)
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
    #: The key as ``hub.region_keys`` holds it (wrapped): which key this is. A store compares it
    #: with the row in the same transaction (:mod:`hub.inbound.groupcommit`), so a key destroyed
    #: or replaced by another process is never sealed with from a stale copy.
    key_ref: bytes = b""
    #: When the region's earlier key was destroyed (None: never): what was sealed before then
    #: was sealed under that key, and no later try can open it.
    earlier_key_destroyed_at: datetime | None = None

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
            raise Unreadable(f"region {self.lan_code}: {purpose}: unknown sealed-data version")
        nonce, body = sealed[1 : 1 + _NONCE], sealed[1 + _NONCE :]
        try:
            plaintext = self._aead.decrypt(nonce, body, f"{self.lan_code}:{purpose}".encode())
        except InvalidTag:
            raise Unreadable(
                f"region {self.lan_code}: the {purpose} cannot be opened with the region's key "
                "(InvalidTag: sealed under a key since destroyed or replaced, or damaged)"
            ) from None
        return zlib.decompress(plaintext) if version == _VERSION_DEFLATED else plaintext

    def sealed_before(self, at: datetime | None) -> bool:
        """Whether something sealed at ``at`` was sealed under the region's destroyed key."""
        at = as_utc(at)
        destroyed = self.earlier_key_destroyed_at
        return at is not None and destroyed is not None and at < destroyed

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
    except (InvalidTag, ValueError):  # Unreadable is a ValueError, as is bad UTF-8
        return UNREADABLE


def _secret_aad(purpose: str) -> bytes:
    # Its own prefix: a sealed secret is never mistaken for a wrapped region key (region-key:…).
    return f"hub-secret:{purpose}".encode()


def _derive(
    data_key: bytes, lan_code: str, key_ref: bytes, destroyed_at: datetime | None
) -> RegionCipher:
    hash_key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=f"hash:{lan_code}".encode()
    ).derive(data_key)
    return RegionCipher(lan_code, AESGCM(data_key), hash_key, key_ref, destroyed_at)


def destroyed_text(lan_code: str) -> str:
    """What a refusal says when a region's key is destroyed (no personal data)."""
    return f"region {lan_code}: its key was destroyed (agreement ended); its data cannot be read"


class KeyStore:
    """Creates, unwraps (and caches) and destroys region keys held in ``hub.region_keys``.

    The cache saves unwrapping, never a look at the key's row: :meth:`cipher` reads the row each
    time, so a key another process destroyed or replaced is noticed at once. Only the inbound
    path uses :meth:`cached` without a look, and its store checks the row in the same
    transaction (:mod:`hub.inbound.groupcommit`).
    """

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

    def create(self, connection: Connection, lan_code: str, *, rekey: bool = False) -> bool:
        """Give a region a fresh data key; return whether one was made.

        A region with a live key keeps it. A destroyed key is never replaced in passing (that
        would bring an ended region back with a new key): :class:`KeyDestroyed`, unless
        ``rekey`` (``region reinstate``, the explicit re-onboarding) asks for a new one.
        """
        row = connection.execute(
            select(region_keys.c.wrapped_key).where(region_keys.c.lan_code == lan_code)
        ).first()
        if row is not None and row.wrapped_key is not None:
            return False
        if row is not None and not rekey:
            raise KeyDestroyed(destroyed_text(lan_code))
        data_key = AESGCM.generate_key(bit_length=256)
        nonce = os.urandom(_NONCE)
        wrapped = nonce + self._master.encrypt(nonce, data_key, f"region-key:{lan_code}".encode())
        now = utcnow()
        if row is None:
            connection.execute(
                region_keys.insert().values(lan_code=lan_code, wrapped_key=wrapped, created_at=now)
            )
        else:
            # ``destroyed_at`` is kept: it tells which of the region's rows were sealed under
            # the destroyed key (RegionCipher.sealed_before).
            connection.execute(
                update(region_keys)
                .where(region_keys.c.lan_code == lan_code)
                .values(wrapped_key=wrapped, created_at=now)
            )
        self.forget(lan_code)
        return True

    def rewrap(self, connection: Connection, lan_code: str) -> None:
        """Wrap the region's (same) data key anew, so that its row no longer holds the blob any
        process has cached: ``region end`` does it, and a store checks the blob in the same
        transaction as its insert (:mod:`hub.inbound.groupcommit`), so nothing is stored for an
        ended region with a key cached before the end. What was sealed stays readable."""
        row = connection.execute(
            select(region_keys.c.wrapped_key).where(region_keys.c.lan_code == lan_code)
        ).first()
        if row is None or row.wrapped_key is None:
            return
        wrapped: bytes = bytes(row.wrapped_key)
        aad = f"region-key:{lan_code}".encode()
        data_key = self._master.decrypt(wrapped[:_NONCE], wrapped[_NONCE:], aad)
        nonce = os.urandom(_NONCE)
        connection.execute(
            update(region_keys)
            .where(region_keys.c.lan_code == lan_code)
            .values(wrapped_key=nonce + self._master.encrypt(nonce, data_key, aad))
        )
        self.forget(lan_code)

    def cached(self, lan_code: str) -> RegionCipher | None:
        """The region's cipher if this process already unwrapped its key (no database access)."""
        with self._lock:
            return self._cache.get(lan_code)

    def cipher(self, connection: Connection, lan_code: str) -> RegionCipher:
        """Return the region's cipher after a look at its key's row (unwrapped on first use).

        Raises :class:`KeyDestroyed` when the key was destroyed, here or in another process.
        """
        row = connection.execute(
            select(region_keys.c.wrapped_key, region_keys.c.destroyed_at).where(
                region_keys.c.lan_code == lan_code
            )
        ).first()
        if row is None or row.wrapped_key is None:
            self.forget(lan_code)
            if row is None:
                raise KeyDestroyed(f"region {lan_code} has no key")
            raise KeyDestroyed(destroyed_text(lan_code))
        wrapped: bytes = bytes(row.wrapped_key)
        cached = self.cached(lan_code)
        if cached is not None and cached.key_ref == wrapped:
            return cached
        data_key = self._master.decrypt(
            wrapped[:_NONCE], wrapped[_NONCE:], f"region-key:{lan_code}".encode()
        )
        cipher = _derive(data_key, lan_code, wrapped, as_utc(row.destroyed_at))
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
