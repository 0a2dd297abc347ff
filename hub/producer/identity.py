"""Who is calling: the HSA-id from the client certificate that the TLS ingress verified.

TLS terminates at the ingress (nginx, see ``deploy/``), which verifies the client certificate
against the SITHS/NTjP CA and forwards it URL-escaped in a header. That header is trusted only
when the request comes from a configured ingress address; the HSA-id is the subject serialNumber.
The header must hold exactly one PEM certificate and nothing else: a server joins repeated
headers into one value (gunicorn with a comma), and a PEM reader takes the first certificate it
finds, so a caller's own header beside the ingress's would otherwise choose the identity.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import unquote

from cryptography import x509
from cryptography.x509.oid import NameOID

from hub.config import Settings


@dataclass(frozen=True)
class Caller:
    """An identified caller, or the reason it was refused (a short text safe to return)."""

    hsa_id: str | None
    refused: str | None = None


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=64)
def _networks(networks: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(net, strict=False) for net in networks)


@lru_cache(maxsize=1024)
def _in_networks(address: str, networks: tuple[str, ...]) -> bool:
    # Cached: callers come from a handful of addresses (the ingress), on every call.
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in _networks(networks))


_BEGIN = "-----BEGIN CERTIFICATE-----"
_END = "-----END CERTIFICATE-----"


@lru_cache(maxsize=256)
def one_certificate(value: str) -> x509.Certificate | None:
    """The certificate a header value holds, if it is exactly one PEM certificate (URL-escaped
    or not) with nothing but whitespace around it; else None.

    Cached: the platform calls with the same few certificates, and parsing one costs more than
    validating a message against the schema.
    """
    text = (unquote(value) if "%" in value else value).strip()
    if not (text.startswith(_BEGIN) and text.endswith(_END)):
        return None
    if text.count("-----BEGIN") != 1 or text.count("-----END") != 1:
        return None
    try:
        certificates = x509.load_pem_x509_certificates(text.encode())
    except ValueError:
        return None
    return certificates[0] if len(certificates) == 1 else None


def hsa_id_from_pem(pem: str) -> str | None:
    """The subject serialNumber of a header value holding exactly one PEM certificate, or None."""
    cert = one_certificate(pem)
    if cert is None:
        return None
    values = cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    if not values:
        return None
    value = values[0].value
    return value if isinstance(value, str) else value.decode()


def from_trusted_proxy(settings: Settings, remote_addr: str | None) -> bool:
    """Whether a request comes from the TLS ingress (``AGENTHUB_TRUSTED_PROXIES``)."""
    return remote_addr is not None and _in_networks(remote_addr, settings.trusted_proxies)


def forwarded_hsa_id(
    settings: Settings, remote_addr: str | None, cert_header_value: str | None
) -> str | None:
    """The HSA-id of the client certificate the ingress verified and forwarded, or None.

    The header is believed only from a trusted proxy: from anywhere else it is anyone's text.
    Used by the web workspace's SITHS sign-in (a person's card: the HSA-id is theirs).
    """
    if not cert_header_value or not from_trusted_proxy(settings, remote_addr):
        return None
    return hsa_id_from_pem(cert_header_value)


def identify(settings: Settings, remote_addr: str, cert_header_value: str | None) -> Caller:
    """Identify the caller of one request, applying the allow-list of consumer HSA-ids."""
    from_ingress = from_trusted_proxy(settings, remote_addr)
    if cert_header_value and from_ingress:
        if one_certificate(cert_header_value) is None:
            return Caller(None, "the client certificate header must hold exactly one certificate")
        hsa_id = hsa_id_from_pem(cert_header_value)
        if hsa_id is None:
            return Caller(None, "the client certificate has no HSA-id (subject serialNumber)")
    elif settings.is_dev and _in_networks(remote_addr, ("127.0.0.0/8", "::1/128")):
        # A developer's own machine: loopback callers need no certificate (AGENTHUB_ENV=dev/test).
        return Caller("dev-loopback")
    else:
        return Caller(None, "a client certificate is required")
    if settings.allowed_consumers and hsa_id not in settings.allowed_consumers:
        return Caller(None, "the caller is not allowed to call this producer")
    return Caller(hsa_id)
