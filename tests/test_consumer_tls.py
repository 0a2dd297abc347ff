"""Mutual TLS towards the platform: the agent's certificate is presented, the platform's CA checked.

A throw-away CA issues a server certificate for 127.0.0.1 and the agent's function certificate
(subject serialNumber = its HSA-id). A werkzeug server on loopback plays the platform and demands
a client certificate from that CA. No database is involved.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from hub.clock import swedish_today
from hub.contract.names import ENDPOINT_PATH
from hub.contract.samples import sample_information
from hub.contract.serialise import build_response_envelope, information_to_element
from hub.outbound.client import NtjpClient, build_envelope
from hub.outbound.settings import ConsumerSettings, DestinationPolicy
from hub.producer.identity import hsa_id_from_pem

AGENT_HSAID = "SE1234567890-HUB1"
POLICY = DestinationPolicy(rate_per_s=0, timeout_ms=5000, connect_timeout_ms=2000)


@dataclass
class Pki:
    """Files of a throw-away PKI."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def _cert(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    san: x509.SubjectAlternativeName | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA, the platform's server certificate and the agent's client certificate."""
    folder = tmp_path_factory.mktemp("pki")
    ca_key, other_key = _key(), _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test SITHS CA")])
    other_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Some other CA")])
    ca = _cert(ca_name, ca_key, ca_name, ca_key, ca=True)
    other = _cert(other_name, other_key, other_name, other_key, ca=True)
    server_key, client_key = _key(), _key()
    server = _cert(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ntjp.test")]),
        server_key,
        ca_name,
        ca_key,
        san=x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
    )
    client = _cert(
        x509.Name(
            [
                x509.NameAttribute(NameOID.SERIAL_NUMBER, AGENT_HSAID),
                x509.NameAttribute(NameOID.COMMON_NAME, "Agent hub"),
            ]
        ),
        client_key,
        ca_name,
        ca_key,
    )
    return Pki(
        ca=_pem(folder / "ca.pem", ca),
        server_cert=_pem(folder / "server.pem", server),
        server_key=_write_key(folder / "server.key", server_key),
        client_cert=_pem(folder / "agent.pem", client),
        client_key=_write_key(folder / "agent.key", client_key),
        other_ca=_pem(folder / "other-ca.pem", other),
    )


@pytest.fixture
def platform(pki: Pki) -> Iterator[tuple[str, list[str]]]:
    """A TLS 'platform' on loopback that demands a client certificate from the test CA."""
    callers: list[str] = []

    def app(environ: Any, start_response: Any) -> Any:
        pem = environ.get("SSL_CLIENT_CERT", "")
        callers.append(hsa_id_from_pem(pem) or "")
        Request(environ).get_data()
        body = build_response_envelope("OK", None)
        return Response(body, 200, content_type="text/xml")(environ, start_response)

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    context.load_verify_locations(pki.ca)
    context.verify_mode = ssl.CERT_REQUIRED
    server = make_server("127.0.0.1", 0, app, threaded=True, ssl_context=context)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_port}{ENDPOINT_PATH}", callers
    server.shutdown()
    server.server_close()
    thread.join(5)


def _envelope() -> bytes:
    info = sample_information("sample", pnr="196201209985", sending_lan="14", today=swedish_today())
    return build_envelope("01", information_to_element(info))


def test_the_agents_certificate_is_presented_and_the_platform_verified(
    pki: Pki, platform: tuple[str, list[str]]
) -> None:
    url, callers = platform
    settings = ConsumerSettings(
        ntjp_url=url,
        client_cert=pki.client_cert,
        client_key=pki.client_key,
        ca_bundle=pki.ca,
        agent_hsaid=AGENT_HSAID,
        dev_identity_header=None,
    )
    client = NtjpClient(settings)
    try:
        result = client.call(_envelope(), "corr-1", POLICY)
    finally:
        client.close()
    assert (result.outcome, result.code) == ("delivered", "OK")
    assert callers == [AGENT_HSAID]


@pytest.mark.parametrize("problem", ["no client certificate", "unknown platform CA"])
def test_a_tls_problem_is_a_configuration_fault_not_a_resend(
    pki: Pki, platform: tuple[str, list[str]], problem: str
) -> None:
    url, callers = platform
    if problem == "no client certificate":
        settings = ConsumerSettings(ntjp_url=url, ca_bundle=pki.ca, dev_identity_header=None)
    else:
        settings = ConsumerSettings(
            ntjp_url=url,
            client_cert=pki.client_cert,
            client_key=pki.client_key,
            ca_bundle=pki.other_ca,
            dev_identity_header=None,
        )
    client = NtjpClient(settings)
    try:
        result = client.call(_envelope(), "corr-2", POLICY)
    finally:
        client.close()
    if problem == "unknown platform CA":
        assert (result.outcome, result.code) == ("config", "TLS")
    else:
        # TLS 1.3 reports a missing client certificate after the handshake: a TLS alert
        # (SSLError) as a rule, a reset connection on an unlucky schedule.
        assert (result.outcome, result.code) in (("config", "TLS"), ("retry", "CONNECT"))
    assert callers == []
