"""Serving the web app: gunicorn (production WSGI server) with workers, or one threaded server."""

from __future__ import annotations

import logging
from typing import Any

from gunicorn.app.base import BaseApplication
from werkzeug.serving import run_simple

from hub.config import (
    WEB_KEEPALIVE_SECONDS,
    WEB_READ_TIMEOUT_SECONDS,
    WEB_REQUEST_TIMEOUT_SECONDS,
    WEB_THREADS,
    WEB_WORKERS,
    Settings,
    load_settings,
)
from hub.context import build_hub
from hub.db.migrate import upgrade_all
from hub.web.app import serving_app
from hub.web.gthread import worker_hook

log = logging.getLogger(__name__)


class ServeError(Exception):
    """``agenthub serve`` was asked for something its environment does not allow."""


def choose_workers(settings: Settings, requested: int | None) -> int:
    """gunicorn workers to run; 0 means werkzeug's threaded server, for dev and test only.

    werkzeug's server says itself that it is not for production: in sit, qa and prod a plain
    ``agenthub serve`` runs gunicorn, and asking for the development server there is refused.
    """
    if requested is None:
        return 0 if settings.is_dev else WEB_WORKERS
    if requested < 0:
        raise ServeError("--workers must be 0 (development server) or more")
    if requested == 0 and not settings.is_dev:
        raise ServeError(
            f"the single-process development server is for AGENTHUB_ENV=dev or test, not "
            f"{settings.env}; run gunicorn workers (--workers N, default {WEB_WORKERS})"
        )
    return requested


def _prepare(settings: Settings) -> None:
    if settings.is_dev:
        # A developer's embedded default migrates itself; real environments migrate explicitly.
        hub = build_hub(settings)
        upgrade_all(hub.db)
        hub.close()


def serve(host: str, port: int, *, workers: int | None = None, threads: int = WEB_THREADS) -> None:
    """Serve until interrupted: gunicorn workers, or werkzeug's threaded server in dev and test.

    Raises :class:`ServeError` when ``workers`` does not suit the environment (see
    :func:`choose_workers`).
    """
    settings = load_settings()
    workers = choose_workers(settings, workers)
    _prepare(settings)
    if workers == 0:
        log.info("serving on http://%s:%d (single process)", host, port)
        run_simple(host, port, serving_app(), threaded=True, use_reloader=False)
        return

    class _Gunicorn(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("threads", threads)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("timeout", WEB_REQUEST_TIMEOUT_SECONDS)
            self.cfg.set("keepalive", WEB_KEEPALIVE_SECONDS)
            # A deadline for reading each request; `timeout` is only a heartbeat.
            self.cfg.set("post_worker_init", worker_hook(WEB_READ_TIMEOUT_SECONDS))
            # Each worker builds its own pools after the fork; nothing is shared by accident.
            self.cfg.set("preload_app", False)

        def load(self) -> Any:
            return serving_app()

    _Gunicorn().run()
