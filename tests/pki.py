"""A throw-away certificate authority for tests of the TLS ingress (``tests/test_deploy.py``).

Made with ``cryptography`` in the test, never committed: a CA standing in for SITHS/NTjP, a
server certificate for loopback, and client certificates shaped like SITHS function certificates
(the HSA-id in the subject ``serialNumber``) — one from the CA, one from another CA, one expired.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Issued:
    """A certificate and its key, as PEM files on disk."""

    cert: Path
    key: Path

    @property
    def pair(self) -> tuple[str, str]:
        """``(cert, key)`` as requests' ``cert=`` wants it."""
        return str(self.cert), str(self.key)


class Authority:
    """A self-signed CA that issues server and client certificates into a folder."""

    def __init__(self, folder: Path, name: str) -> None:
        self.folder = folder
        self.name = name
        folder.mkdir(parents=True, exist_ok=True)
        self._key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.now(UTC)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self._key, hashes.SHA256())
        )
        self.cert_path = folder / f"{name}.pem"
        self.cert_path.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))

    def issue(
        self,
        file_stem: str,
        common_name: str,
        *,
        serial_number: str | None = None,
        server_names: tuple[str, ...] = (),
        not_before: datetime | None = None,
        not_after: datetime | None = None,
    ) -> Issued:
        """Issue a certificate: a server one when ``server_names`` are given, else a client one.

        ``serial_number`` goes into the subject's serialNumber attribute, where SITHS function
        certificates carry the HSA-id.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
        if serial_number is not None:
            attributes.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, serial_number))
        now = datetime.now(UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attributes))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - timedelta(hours=1))
            .not_valid_after(not_after or now + timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        if server_names:
            sans: list[x509.GeneralName] = []
            for name in server_names:
                try:
                    sans.append(x509.IPAddress(ipaddress.ip_address(name)))
                except ValueError:
                    sans.append(x509.DNSName(name))
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
            usage = ExtendedKeyUsageOID.SERVER_AUTH
        else:
            usage = ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        cert_path = self.folder / f"{file_stem}.pem"
        key_path = self.folder / f"{file_stem}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        key_path.chmod(0o600)
        return Issued(cert_path, key_path)


@dataclass(frozen=True)
class Pki:
    """Everything the ingress test needs (see the module docstring)."""

    ca: Authority
    server: Issued
    platform: Issued
    other_ca: Issued
    expired: Issued
    platform_hsa_id: str


def make_pki(folder: Path, platform_hsa_id: str = "SE2321000016-NTJP") -> Pki:
    """A CA with a loopback server certificate and the three client certificates of the test."""
    ca = Authority(folder, "test-siths-ca")
    stranger = Authority(folder / "other", "some-other-ca")
    now = datetime.now(UTC)
    return Pki(
        ca=ca,
        server=ca.issue("server", "localhost", server_names=("localhost", "127.0.0.1")),
        platform=ca.issue("platform", "NTjP platform", serial_number=platform_hsa_id),
        other_ca=stranger.issue("stranger", "NTjP platform", serial_number=platform_hsa_id),
        expired=ca.issue(
            "expired",
            "NTjP platform",
            serial_number=platform_hsa_id,
            not_before=now - timedelta(days=30),
            not_after=now - timedelta(days=1),
        ),
        platform_hsa_id=platform_hsa_id,
    )
