"""gunicorn's threaded workers with a deadline for reading each request, and masked logs.

gunicorn's gthread worker reads a request's headers and body on one of its threads, with
blocking socket reads and no limit in time: its ``timeout`` is a heartbeat of the worker
process, which a thread stuck in a read does not stop. A client that sends part of a request
and then nothing (or a byte now and then) holds a thread for as long as it keeps its connection
open, and as many such clients as there are threads stop the worker answering anyone.

:func:`worker_hook` (gunicorn's ``post_worker_init``, set by ``agenthub serve`` and by
``deploy/gunicorn.conf.py``) makes each gthread worker bound every read of a request by one
deadline, counted from its first byte: headers and body must be in within
``hub.config.WEB_READ_TIMEOUT_SECONDS``. A client still sending its headers then is answered
``408 Request Timeout`` and its connection closed; one still sending its body gets the
endpoint's SOAP fault (the app sees the read fail). The ingress in front should buffer whole
requests itself (deploy/README.md); this bound holds without it.
"""

from __future__ import annotations

import logging
import re
import socket
import time
from collections.abc import Callable
from typing import Any, Final

from gunicorn.http.errors import NoMoreData
from gunicorn.workers.gthread import ThreadWorker

from hub.config import WEB_READ_TIMEOUT_SECONDS
from hub.logs import MaskPersonnummer

_TIMEOUT_TEXT: Final = b"the request was not received in due time\n"
_TIMEOUT_ANSWER: Final = (
    b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Type: text/plain\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(_TIMEOUT_TEXT), _TIMEOUT_TEXT)
)


class ReadDeadlinePassed(NoMoreData):  # type: ignore[misc]
    """The request was not read within its deadline (gunicorn closes such a connection quietly).

    A :class:`NoMoreData`, so gunicorn treats it as the client going away; an ``OSError``, so an
    application reading the body sees a failed read.
    """

    def __str__(self) -> str:
        return "the request was not received within its read deadline"


class DeadlineSocket:
    """A connection's socket whose reads of one request share a deadline.

    Everything but ``recv`` and ``recv_into`` is the socket's own. :meth:`expect_request` starts
    a request: its first read sets the deadline, every read after it gets only the time left.
    """

    __slots__ = ("_answered", "_deadline", "_in_headers", "_seconds", "_sock")

    def __init__(self, sock: socket.socket, seconds: float) -> None:
        self._sock = sock
        self._seconds = seconds
        self._deadline: float | None = None
        self._in_headers = False
        self._answered = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def expect_request(self) -> None:
        """A new request starts on this connection: its first read starts the deadline."""
        self._deadline = None
        self._in_headers = True

    def headers_read(self) -> None:
        """The headers are in; what is left of the deadline is for the body."""
        self._in_headers = False

    def request_read(self) -> None:
        """The application has answered; a deadline that passed keeps the connection closing."""
        if self._deadline is not None and time.monotonic() < self._deadline:
            self._deadline = None

    @property
    def passed(self) -> bool:
        """Whether this request's deadline has passed."""
        return self._deadline is not None and time.monotonic() >= self._deadline

    def recv(self, size: int, flags: int = 0) -> bytes:
        """``socket.recv`` within the request's deadline."""
        data: bytes = self._bounded(lambda: self._sock.recv(size, flags))
        return data

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        """``socket.recv_into`` within the request's deadline."""
        count: int = self._bounded(lambda: self._sock.recv_into(buffer, nbytes, flags))
        return count

    def _bounded(self, read: Callable[[], Any]) -> Any:
        now = time.monotonic()
        if self._deadline is None:
            if not self._in_headers:
                return read()  # between requests: gunicorn's own timeouts apply
            self._deadline = now + self._seconds
        remaining = self._deadline - now
        if remaining <= 0:
            raise self._passed()
        prior = self._sock.gettimeout()
        self._sock.settimeout(remaining if prior is None else min(prior, remaining))
        try:
            return read()
        except TimeoutError:
            if time.monotonic() >= self._deadline:
                raise self._passed() from None
            raise  # a shorter timeout of gunicorn's own (draining a body)
        finally:
            self._sock.settimeout(prior)

    def _passed(self) -> ReadDeadlinePassed:
        if self._in_headers and not self._answered:
            # No request to hand to the application yet: say so before the connection closes.
            self._answered = True
            try:
                self._sock.settimeout(1.0)
                self._sock.sendall(_TIMEOUT_ANSWER)
            except OSError:
                pass
        return ReadDeadlinePassed()


class DeadlineThreadWorker(ThreadWorker):  # type: ignore[misc]
    """gunicorn's gthread worker whose connections read each request within a deadline."""

    read_timeout_seconds: float = WEB_READ_TIMEOUT_SECONDS

    def enqueue_req(self, conn: Any) -> None:
        """Give a new connection its deadline-bound socket before a thread reads from it."""
        if not isinstance(conn.sock, DeadlineSocket) and not self.cfg.is_ssl:
            conn.sock = DeadlineSocket(conn.sock, self.read_timeout_seconds)
        super().enqueue_req(conn)

    def handle(self, conn: Any) -> Any:
        """Read and serve one request; its reads share one deadline from its first byte."""
        if isinstance(conn.sock, DeadlineSocket):
            conn.sock.expect_request()
        return super().handle(conn)

    def handle_request(self, req: Any, conn: Any) -> Any:
        """Serve a request whose headers are in: the rest of the deadline is for its body."""
        sock = conn.sock
        if not isinstance(sock, DeadlineSocket):
            return super().handle_request(req, conn)
        sock.headers_read()
        try:
            keepalive = super().handle_request(req, conn)
        finally:
            sock.request_read()
        return keepalive and not sock.passed


# gunicorn's own warnings about a broken request quote its request line or headers.
_INVALID_REQUEST_RE: Final = re.compile(r"^(Invalid request from ip=\S+?):.*", re.DOTALL)


class _GunicornRecords(MaskPersonnummer):
    """The application's masking, and no request text in gunicorn's invalid-request warnings."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Reduce an invalid-request warning to its address; mask the rest as the app does."""
        message = record.getMessage()
        reduced = _INVALID_REQUEST_RE.sub(r"\1 (request not logged)", message)
        if reduced != message:
            record.msg, record.args = reduced, None
        return super().filter(record)


class WorkerHook:
    """gunicorn's ``post_worker_init``: bound request reads to ``seconds``, mask the logs."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __call__(self, worker: Any) -> None:
        """Make a freshly started gthread worker the deadline-bound one; mask its log."""
        for name in ("error_log", "access_log"):
            for handler in getattr(getattr(worker.log, name, None), "handlers", ()):
                if not any(isinstance(f, _GunicornRecords) for f in handler.filters):
                    handler.addFilter(_GunicornRecords())
        if type(worker) is ThreadWorker:
            # The worker has not served yet: it becomes the subclass, methods and all.
            worker.__class__ = DeadlineThreadWorker
            worker.read_timeout_seconds = self.seconds
            worker.log.info("reading each request within %s s of its first byte", self.seconds)
        elif not isinstance(worker, DeadlineThreadWorker):
            worker.log.warning(
                "request reads have no deadline: %s is not gunicorn's gthread worker",
                type(worker).__name__,
            )


def worker_hook(seconds: float) -> WorkerHook:
    """The ``post_worker_init`` hook for a read deadline of ``seconds``."""
    return WorkerHook(seconds)
