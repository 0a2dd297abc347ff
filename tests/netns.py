"""A link a test can cut: a TCP proxy to PostgreSQL across a veth pair into a network namespace.

The client connects to an address inside a namespace of the test's own, so its packets cross a
veth link; setting the link down drops them the way a network partition or a vanished database
host does, with no reset and no error, so only timeouts can end a statement caught in it. Needs
root and iproute2 (``ip netns``); the proxy's other leg reaches PostgreSQL on the host's loopback.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def netns_problem() -> str | None:
    """Why a namespace cannot be made here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 (ip) is not installed"
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def _listen_in(namespace: str, address: tuple[str, int]) -> socket.socket:
    """A listening socket that belongs to ``namespace`` (made by a thread that enters it)."""
    made: list[socket.socket | BaseException] = []

    def make() -> None:
        try:
            with open(f"/run/netns/{namespace}") as handle:
                if _libc.setns(handle.fileno(), CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns failed")
            made.append(socket.create_server(address))
        except BaseException as exc:  # handed to the caller
            made.append(exc)

    # setns moves only this thread, which then ends: the test's own threads stay where they are.
    thread = threading.Thread(target=make)
    thread.start()
    thread.join(10)
    if not made or isinstance(made[0], BaseException):
        raise RuntimeError(f"no socket in namespace {namespace}: {made}")
    return made[0]


@dataclass
class CuttableLink:
    """``host:port`` reaches PostgreSQL through a link that ``cut`` drops and ``heal`` restores."""

    host: str
    port: int
    device: str
    sockets: list[socket.socket] = field(default_factory=list)

    def cut(self) -> None:
        """Drop every packet from now on, silently, both ways."""
        _ip("link", "set", self.device, "down")

    def heal(self) -> None:
        """Let packets through again."""
        _ip("link", "set", self.device, "up")


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for end in (source, sink):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@contextmanager
def cuttable_link_to(target: tuple[str, int]) -> Iterator[CuttableLink]:
    """A proxy to ``target`` reached across a veth pair, for as long as the block runs."""
    tag = f"ah{os.getpid() % 100000}"
    namespace, outer, inner = f"{tag}ns", f"{tag}h", f"{tag}n"
    octet = os.getpid() % 250 + 1
    host_ip, inner_ip = f"10.213.{octet}.1", f"10.213.{octet}.2"
    link: CuttableLink | None = None
    _ip("netns", "add", namespace)
    try:
        _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
        _ip("link", "set", inner, "netns", namespace)
        _ip("addr", "add", f"{host_ip}/30", "dev", outer)
        _ip("link", "set", outer, "up")
        _ip("netns", "exec", namespace, "ip", "addr", "add", f"{inner_ip}/30", "dev", inner)
        _ip("netns", "exec", namespace, "ip", "link", "set", inner, "up")
        _ip("netns", "exec", namespace, "ip", "link", "set", "lo", "up")
        listener = _listen_in(namespace, (inner_ip, 0))
        link = CuttableLink(inner_ip, listener.getsockname()[1], outer, [listener])
        sockets = link.sockets

        def accept() -> None:
            while True:
                try:
                    client, _ = listener.accept()
                    upstream = socket.create_connection(target, timeout=5)
                    upstream.settimeout(None)
                except OSError:
                    return
                sockets.extend([client, upstream])
                threading.Thread(target=_pipe, args=(client, upstream), daemon=True).start()
                threading.Thread(target=_pipe, args=(upstream, client), daemon=True).start()

        threading.Thread(target=accept, daemon=True).start()
        yield link
    finally:
        for sock in link.sockets if link else []:
            sock.close()
        subprocess.run(["ip", "link", "del", outer], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=10)
