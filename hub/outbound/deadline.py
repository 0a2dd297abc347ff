"""A hard deadline for a whole HTTP exchange over ``requests``: connect, send, headers and body.

``requests`` (urllib3) bounds each socket operation, never the call: a peer that sends one byte
every few seconds keeps a call open for as long as it likes, however short the read timeout. So
each call here runs under a :class:`CallGuard`, and one watchdog thread shuts down the sockets of
a guard whose deadline has passed. A blocked read then returns at once (Linux wakes a thread
blocked on a socket that is shut down), urllib3 raises, and the caller sees :attr:`CallGuard.why`
— ``"deadline"``, or ``"interrupted"`` when :meth:`Deadlines.interrupt` cut every call short (a
worker told to stop).

The sockets are found without reaching into a response: the session's adapters make urllib3
connections that hand each socket they open or reuse to the guard of the calling thread. Name
resolution happens before there is a socket and is not bounded (``/etc/hosts`` or a resolver
answers quickly, or ``connect`` fails).

Used by the senders (:class:`hub.outbound.client.NtjpClient`) and by the NTjP simulator's calls
to producers (:mod:`hub.sim.app`), which must answer VP009 at the platform's timeout.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any, Literal

import requests
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

Why = Literal["deadline", "interrupted"]

_current = threading.local()


class CallGuard:
    """The deadline of one call and the sockets it uses; made by :meth:`Deadlines.call`."""

    def __init__(self, deadline: float) -> None:
        #: When the call must be over (``time.monotonic()``).
        self.deadline = deadline
        #: Why the call was cut short, or None while it may run.
        self.why: Why | None = None
        self._sockets: list[socket.socket] = []
        self._over = False
        self._lock = threading.Lock()

    @property
    def expired(self) -> bool:
        """Whether the call was cut short (deadline passed, or interrupted)."""
        return self.why is not None

    def attach(self, sock: socket.socket) -> None:
        """A socket the call uses: shut down when the guard expires (at once if it already has)."""
        with self._lock:
            if self._over:
                return
            self._sockets.append(sock)
            if self.why is not None:
                _shut(sock)

    def expire(self, why: Why) -> None:
        """Cut the call short: shut down its sockets (nothing once the call is over)."""
        with self._lock:
            if self._over or self.why is not None:
                return
            self.why = why
            for sock in self._sockets:
                _shut(sock)

    def finish(self) -> None:
        """The call is over: its sockets (kept alive for the next call) are no longer watched."""
        with self._lock:
            self._over = True
            self._sockets.clear()


def _shut(sock: socket.socket) -> None:
    # socket.socket's own shutdown, also for an SSLSocket: no TLS close_notify, whose write could
    # block on a peer that does not read, only the descriptor's shutdown, which wakes its reader.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _attach_current(sock: socket.socket | None) -> None:
    guard: CallGuard | None = getattr(_current, "guard", None)
    if guard is not None and sock is not None:
        guard.attach(sock)


class Deadlines:
    """One watchdog thread for many calls: expires each :class:`CallGuard` at its deadline."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._heap: list[tuple[float, int, CallGuard]] = []
        self._active: set[CallGuard] = set()
        self._order = itertools.count()
        self._thread: threading.Thread | None = None
        self._interrupted = False
        self._closed = False
        with self._lock:
            # Started now, not on the first call: starting a thread waits for it to run, and
            # the first call of a rate-capped destination should not pay for that.
            self._start()

    @contextlib.contextmanager
    def call(self, seconds: float) -> Iterator[CallGuard]:
        """Run the block as one call with a hard deadline ``seconds`` from now.

        Sockets opened or reused in the block through a :func:`guarded_session` are shut down
        when the deadline passes (or on :meth:`interrupt`); the block's ``requests`` call then
        raises, and ``guard.why`` says why.
        """
        guard = CallGuard(time.monotonic() + seconds)
        with self._lock:
            if self._interrupted:
                guard.why = "interrupted"
            self._active.add(guard)
            heapq.heappush(self._heap, (guard.deadline, next(self._order), guard))
            self._start()
            self._wake.notify()
        previous = getattr(_current, "guard", None)
        _current.guard = guard
        try:
            yield guard
        finally:
            _current.guard = previous
            guard.finish()
            with self._lock:
                self._active.discard(guard)

    def interrupt(self) -> None:
        """Cut every call in flight short, and every later one at once (a worker stopping)."""
        with self._lock:
            self._interrupted = True
            active = list(self._active)
        for guard in active:
            guard.expire("interrupted")

    def close(self) -> None:
        """Stop the watchdog thread (calls still running keep their guard, unwatched)."""
        with self._lock:
            self._closed = True
            self._wake.notify()
            thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(5)

    def _start(self) -> None:
        # Under self._lock.
        if self._thread is None and not self._closed:
            self._thread = threading.Thread(target=self._watch, name="call-deadlines", daemon=True)
            self._thread.start()

    def _watch(self) -> None:
        with self._lock:
            while not self._closed:
                while self._heap and self._heap[0][2] not in self._active:
                    heapq.heappop(self._heap)  # finished in time
                if not self._heap:
                    self._wake.wait()
                    continue
                deadline, _, guard = self._heap[0]
                now = time.monotonic()
                if deadline > now:
                    self._wake.wait(deadline - now)
                    continue
                heapq.heappop(self._heap)
                self._active.discard(guard)
                self._lock.release()
                try:
                    guard.expire("deadline")
                finally:
                    self._lock.acquire()


class _GuardedHTTPConnection(HTTPConnection):
    """An HTTP connection that gives each socket it opens or reuses to the current call's guard."""

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _attach_current(sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        """Send a request; a kept-alive socket is watched by this call's guard too."""
        _attach_current(self.sock)
        super().request(*args, **kwargs)


class _GuardedHTTPSConnection(HTTPSConnection):
    """The HTTPS twin of :class:`_GuardedHTTPConnection` (the TLS handshake is bounded too)."""

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _attach_current(sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        """Send a request; a kept-alive socket is watched by this call's guard too."""
        _attach_current(self.sock)
        super().request(*args, **kwargs)


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class _GuardedAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter whose pools make guarded connections."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        """The usual pool manager, with pools whose connections report their sockets."""
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _GuardedHTTPPool,
            "https": _GuardedHTTPSPool,
        }


def guarded_session() -> requests.Session:
    """A ``requests.Session`` whose calls inside :meth:`Deadlines.call` keep its deadline."""
    session = requests.Session()
    session.mount("http://", _GuardedAdapter())
    session.mount("https://", _GuardedAdapter())
    return session


__all__ = ["CallGuard", "Deadlines", "guarded_session"]
