"""Shared benchmark machinery: a gunicorn server in a subprocess, a threaded HTTP load, RSS."""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of a process and all its descendants."""
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
        stack.extend(_children(current))
    return total


def _cpu_ticks(pid: int, with_reaped: bool) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    # utime, stime, then cutime, cstime (children already waited for) in clock ticks.
    ticks = int(fields[11]) + int(fields[12])
    if with_reaped:
        ticks += int(fields[13]) + int(fields[14])
    return ticks


def tree_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by a process, its live descendants and reaped ones."""
    total, stack = _cpu_ticks(pid, True), _children(pid)
    while stack:
        current = stack.pop()
        total += _cpu_ticks(current, False)
        stack.extend(_children(current))
    return total / os.sysconf("SC_CLK_TCK")


def _comm(pid: int | str) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def postgres_pid() -> int | None:
    """The local PostgreSQL postmaster's pid (a postgres process whose parent is not one)."""
    for entry in Path("/proc").glob("[0-9]*"):
        if _comm(entry.name) not in ("postgres", "postmaster"):
            continue
        try:
            parent = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()[1]
        except (OSError, IndexError):
            continue
        if _comm(parent) not in ("postgres", "postmaster"):
            return int(entry.name)
    return None


class Server:
    """gunicorn serving ``target`` of the checkout ``cwd`` (this one) on loopback with ``env``."""

    def __init__(
        self,
        target: str,
        env: dict[str, str],
        *,
        workers: int = 2,
        threads: int = 16,
        log: Path | None = None,
        cwd: Path = REPO,
    ) -> None:
        self.port = free_port()
        self.log = log
        out = open(log, "ab") if log else subprocess.DEVNULL
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-w",
                str(workers),
                "-k",
                "gthread",
                "--threads",
                str(threads),
                "-b",
                f"127.0.0.1:{self.port}",
                "--keep-alive",
                "30",
                "--backlog",
                "512",
                target,
            ],
            cwd=cwd,  # ``python -m`` imports the app from here first
            env={**os.environ, **env},
            stdout=out,
            stderr=out,
        )
        if not isinstance(out, int):
            out.close()  # the child holds its own copy
        self.peak_rss = 0
        self._stop = threading.Event()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{target} exited; see {log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                time.sleep(0.2)
        else:
            raise RuntimeError(f"{target} did not start")
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_rss = max(self.peak_rss, tree_rss_bytes(self.process.pid))
            self._stop.wait(0.2)

    def stop(self) -> None:
        """Stop gunicorn and its workers."""
        self._stop.set()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class LoadResult:
    """What one load run measured."""

    count: int
    failures: int
    seconds: float
    latencies: list[float]
    # What the failed calls got: "HTTP 500 Server" (the SOAP faultcode), "HTTP 200", ...
    failed_as: Counter[str] = field(default_factory=Counter)

    def __add__(self, other: LoadResult) -> LoadResult:
        """Two runs (rounds) of the same app taken together."""
        return LoadResult(
            self.count + other.count,
            self.failures + other.failures,
            self.seconds + other.seconds,
            self.latencies + other.latencies,
            self.failed_as + other.failed_as,
        )

    @property
    def rate(self) -> float:
        """Answered calls per second."""
        return self.count / self.seconds

    def percentile(self, p: float) -> float:
        """Latency percentile in milliseconds."""
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000

    @property
    def p50(self) -> float:
        """Median latency in ms."""
        return statistics.median(self.latencies) * 1000


def run_load(
    port: int, path: str, bodies: Sequence[bytes], concurrency: int, expect: bytes
) -> LoadResult:
    """POST every body once, from ``concurrency`` keep-alive connections; time each call."""
    lock = threading.Lock()
    position = iter(range(len(bodies)))
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    failed_as: list[Counter[str]] = [Counter() for _ in range(concurrency)]

    def worker(slot: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
        while True:
            with lock:
                index = next(position, None)
            if index is None:
                break
            started = time.perf_counter()
            connection.request("POST", path, bodies[index], headers)
            response = connection.getresponse()
            data = response.read()
            latencies[slot].append(time.perf_counter() - started)
            if response.status != 200 or expect not in data:
                failed_as[slot][_answer_kind(response.status, data)] += 1
        connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    flat = [x for chunk in latencies for x in chunk]
    kinds = sum(failed_as, Counter())
    return LoadResult(len(flat), sum(kinds.values()), seconds, flat, kinds)


_FAULTCODE = re.compile(rb"<faultcode>(?:[^<:]*:)?([^<]*)</faultcode>")


def _answer_kind(status: int, data: bytes) -> str:
    # A SOAP fault is told by its faultcode (Server: try again; Client: the request is wrong).
    fault = _FAULTCODE.search(data)
    return f"HTTP {status} {fault.group(1).decode(errors='replace')}" if fault else f"HTTP {status}"
