"""Serving the simulator: the CLI entry point and a context manager for tests and the demo."""

from __future__ import annotations

import logging
import pathlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from werkzeug.serving import BaseWSGIServer, make_server

from hub.contract.names import ENDPOINT_PATH
from hub.sim.app import SimApp, create_sim_app
from hub.sim.config import SimConfig, default_sim_config, load_sim_config

log = logging.getLogger(__name__)


def run_sim(host: str, port: int, config_path: str | None) -> None:
    """Serve the simulator on ``host:port`` until interrupted (``agenthub ntjp-sim``).

    Without ``config_path`` every län code routes to the built-in mock and any consumer is
    authorised, which is enough to try a consumer against it.
    """
    config = load_sim_config(pathlib.Path(config_path)) if config_path else default_sim_config()
    app = create_sim_app(config)
    # A threaded server: the platform carries concurrent calls (at least 10, docs/contract.md).
    server = make_server(host, port, app, threaded=True)
    log.warning(
        "NTjP simulator [%s] on http://%s:%d (e.g. POST %s): %d routes, %d authorisations",
        config.instance_id,
        host,
        server.server_port,
        ENDPOINT_PATH,
        len(config.effective_routes()),
        len(config.effective_authorisations()),
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        app.close()


@dataclass(frozen=True)
class RunningSim:
    """A simulator served on loopback by :func:`serve_sim_in_thread`."""

    app: SimApp
    server: BaseWSGIServer
    base_url: str

    @property
    def url(self) -> str:
        """The conventional endpoint URL of ProcessCervixScreeningInformation on the simulator."""
        return self.base_url + ENDPOINT_PATH


@contextmanager
def serve_sim_in_thread(
    config: SimConfig, host: str = "127.0.0.1", port: int = 0
) -> Iterator[RunningSim]:
    """Serve the simulator in a background thread for the duration of the ``with`` block.

    Port 0 picks a free port; the server and its outbound connections are closed on exit.
    """
    app = create_sim_app(config)
    server = make_server(host, port, app, threaded=True)
    # A short poll interval: shutdown() waits up to one interval, and tests start many of these.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="ntjp-sim", daemon=True
    )
    thread.start()
    try:
        yield RunningSim(app, server, f"http://{host}:{server.server_port}")
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
        app.close()


__all__ = ["RunningSim", "run_sim", "serve_sim_in_thread"]
