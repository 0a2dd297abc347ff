"""The web process under real gunicorn, configured as deploy/gunicorn.conf.py configures it.

What only a real server shows: clients that send part of a request and stall (issue 17,
defect 6) and repeated headers joined into one value (defect 9).
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from bench.common import free_port
from hub.contract.names import ENDPOINT_PATH
from hub.contract.samples import sample_information
from hub.contract.serialise import build_request_envelope
from hub.tenancy.registry import MemberRegion
from tests.test_producer import _cert_pem

REPO = Path(__file__).resolve().parent.parent
# Short for the test; deploy/gunicorn.conf.py uses hub.config.WEB_READ_TIMEOUT_SECONDS.
READ_SECONDS = 2.0


class Served:
    """A gunicorn serving the hub on loopback."""

    def __init__(self, port: int, process: subprocess.Popen[bytes], log: Path) -> None:
        self.port = port
        self.process = process
        self.log = log

    def post(self, body: bytes, headers: list[tuple[str, str]], timeout: float = 20) -> bytes:
        """POST ``body`` with ``headers`` (repeats kept, in order); the response body."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.putrequest("POST", ENDPOINT_PATH)
            for name, value in [("Content-Type", "text/xml; charset=utf-8"), *headers]:
                connection.putheader(name, value)
            connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body)
            return connection.getresponse().read()
        finally:
            connection.close()


@pytest.fixture
def serve(settings: Any, hub: Any, tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """Start gunicorn with deploy/gunicorn.conf.py (a short read deadline, one worker), on a
    migrated database (``hub``): the web side reads its sessions there on every request."""
    if not settings.is_sqlite:
        pytest.skip("the server's behaviour, not the database's; once is enough")
    started: list[Served] = []

    def start(threads: int = 4, **env: str) -> Served:
        config = tmp_path / "gunicorn.conf.py"
        config.write_text(
            f"exec(open({str(REPO / 'deploy' / 'gunicorn.conf.py')!r}).read())\n"
            f"post_worker_init = worker_hook({READ_SECONDS})\n"
        )
        port = free_port()
        log = tmp_path / f"gunicorn-{port}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [
                    *(sys.executable, "-m", "gunicorn", "-c", str(config)),
                    *("-w", "1", "--threads", str(threads), "-b", f"127.0.0.1:{port}"),
                    "hub.wsgi:app",
                ],
                cwd=REPO,
                env={
                    **os.environ,
                    "AGENTHUB_ENV": "test",
                    "AGENTHUB_DATA_DIR": str(settings.data_dir),
                    "AGENTHUB_DATABASE_URL": settings.database_url,
                    **env,
                },
                stdout=out,
                stderr=out,
            )
        served = Served(port, process, log)
        started.append(served)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            try:
                served.post(b"", [], timeout=2)
                return served
            except OSError:
                time.sleep(0.2)
        raise AssertionError(log.read_text())

    yield start
    for served in started:
        served.process.terminate()
        served.process.wait(30)


def _valid(make_pnr: Callable[[], str]) -> bytes:
    info = sample_information("move", pnr=make_pnr(), sending_lan="05", today=date.today())
    return build_request_envelope("14", info)


class _SlowClient(threading.Thread):
    """Sends ``first`` and then ``trickle`` a byte at a time, until the server closes."""

    def __init__(self, port: int, first: bytes, trickle: bytes = b"", every: float = 0.3) -> None:
        super().__init__(daemon=True)
        self.port, self.first, self.trickle, self.every = port, first, trickle, every
        self.answer = b""
        self.closed_after: float | None = None
        self.connected = threading.Event()

    def run(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=60) as sock:
            started = time.monotonic()
            sock.sendall(self.first)
            self.connected.set()
            sock.settimeout(self.every)
            sent = 0
            while True:
                try:
                    data = sock.recv(65536)
                except TimeoutError:
                    if sent < len(self.trickle):
                        try:
                            sock.sendall(self.trickle[sent : sent + 1])
                        except OSError:
                            break
                        sent += 1
                    if time.monotonic() - started > 40:
                        break
                    continue
                except OSError:
                    break
                if not data:
                    break
                self.answer += data
            self.closed_after = time.monotonic() - started


def test_clients_that_stall_or_trickle_do_not_keep_valid_calls_waiting(
    serve: Callable[..., Served],
    regions_ab: tuple[MemberRegion, MemberRegion],
    make_pnr: Callable[[], str],
) -> None:
    # Issue 17, defect 6: a request whose body never completed held its gthread thread for ever
    # (gunicorn's `timeout` is a heartbeat only); 32 such clients left 2 of 10 valid calls
    # answered within 10 s. Here three times as many stalled clients as threads come first.
    served = serve(threads=4)
    head = (
        f"POST {ENDPOINT_PATH} HTTP/1.1\r\nHost: hub\r\nContent-Type: text/xml\r\n"
        "Content-Length: 5000\r\n\r\n"
    ).encode()
    slow = [_SlowClient(served.port, head + b"<soap:Envelope") for _ in range(6)]
    slow += [_SlowClient(served.port, head[:20]) for _ in range(3)]  # headers never end
    slow += [_SlowClient(served.port, head[:10], trickle=head[10:] + b"x" * 5000)]
    slow += [_SlowClient(served.port, head, trickle=b"x" * 5000) for _ in range(2)]
    for client in slow:
        client.start()
        client.connected.wait(10)
    time.sleep(0.5)  # every thread is now held by one of them
    started = time.monotonic()

    def call(_: int) -> tuple[bytes, float]:
        answer = served.post(_valid(make_pnr), [], timeout=30)
        return answer, time.monotonic() - started

    with ThreadPoolExecutor(max_workers=10) as pool:
        answers = list(pool.map(call, range(10)))
    log = served.log.read_text(errors="replace")
    assert all(b">OK<" in answer for answer, _ in answers), log[-3000:]
    # The stalled clients ahead of them hold the four threads for one deadline each, in turns.
    assert max(took for _, took in answers) < 4 * READ_SECONDS + 4, answers
    for client in slow:
        client.join(20)
        assert client.closed_after is not None and client.closed_after < READ_SECONDS + 8
    headers_cut = [c for c in slow if b"\r\n\r\n" not in c.first + c.trickle[:1]]
    assert all(c.answer.startswith(b"HTTP/1.1 408 ") for c in headers_cut), [
        c.answer[:60] for c in headers_cut
    ]
    bodies_cut = [c for c in slow if c not in headers_cut]
    assert all(b"not received in full in time" in c.answer for c in bodies_cut), [
        c.answer[-200:] for c in bodies_cut
    ]
    assert "Traceback" not in log, log[-3000:]


def test_two_certificate_headers_are_refused_however_the_server_joins_them(
    serve: Callable[..., Served],
    regions_ab: tuple[MemberRegion, MemberRegion],
    make_pnr: Callable[[], str],
) -> None:
    # Issue 17, defect 9: gunicorn joins a repeated header with a comma, and the first
    # certificate won: the allowed one beside a foreign one was answered OK.
    served = serve(AGENTHUB_ALLOWED_CONSUMERS="SE2321000016-NTJP")
    allowed = ("X-SSL-Client-Cert", quote(_cert_pem("SE2321000016-NTJP")))
    foreign = ("X-SSL-Client-Cert", quote(_cert_pem("SE999-OTHER")))
    assert b">OK<" in served.post(_valid(make_pnr), [allowed])
    assert b"not allowed to call" in served.post(_valid(make_pnr), [foreign])
    for pair in ([allowed, foreign], [foreign, allowed], [allowed, allowed]):
        answer = served.post(_valid(make_pnr), pair)
        assert b"faultcode>soap:Client<" in answer, answer
        assert b"must hold exactly one certificate" in answer, answer


def test_agenthub_serve_and_the_deploy_configuration_share_one_read_deadline(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import base64
    import runpy

    from gunicorn.app.base import BaseApplication

    from hub.config import WEB_READ_TIMEOUT_SECONDS
    from hub.web import server
    from hub.web.gthread import WorkerHook

    conf = runpy.run_path(str(REPO / "deploy" / "gunicorn.conf.py"))
    hook = conf["post_worker_init"]
    assert isinstance(hook, WorkerHook) and hook.seconds == WEB_READ_TIMEOUT_SECONDS
    seen: list[Any] = []
    monkeypatch.setattr(BaseApplication, "run", lambda self: seen.append(self.cfg))
    monkeypatch.setenv("AGENTHUB_ENV", "qa")
    monkeypatch.setenv("AGENTHUB_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("AGENTHUB_MASTER_KEY", base64.b64encode(bytes(32)).decode())
    server.serve("127.0.0.1", free_port(), workers=1)
    served = seen[0].post_worker_init
    assert isinstance(served, WorkerHook) and served.seconds == WEB_READ_TIMEOUT_SECONDS
    assert seen[0].worker_class_str == "gthread"


def test_gunicorn_logs_no_request_text_of_a_broken_request(
    serve: Callable[..., Served], make_pnr: Callable[[], str]
) -> None:
    # gunicorn's own warning about a broken request quotes its request line (issue 17, defect 7).
    served = serve()
    secret = make_pnr()
    for line in (f"GET /{secret} HTTP/9{secret}", f"G{secret}T / HTTP/1.1", f"GET /\x01{secret}"):
        with socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock:
            sock.sendall(line.encode() + b"\r\nHost: hub\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 4")
    time.sleep(0.5)
    log = served.log.read_text(errors="replace")
    assert "Invalid request from ip=127.0.0.1 (request not logged)" in log, log[-2000:]
    assert secret not in log and secret[:8] not in log, log[-2000:]
