"""Serving the web app: gunicorn (production WSGI server) with workers, or one threaded server."""

from __future__ import annotations

import logging
from typing import Any

from hub.app import serving_app
from hub.config import load_settings
from hub.context import build_hub
from hub.migrate import upgrade_all

log = logging.getLogger(__name__)


def _prepare() -> None:
    settings = load_settings()
    if settings.is_dev:
        # A developer's embedded default migrates itself; real environments migrate explicitly.
        hub = build_hub(settings)
        upgrade_all(hub.db)
        hub.close()


def serve(host: str, port: int, *, workers: int = 0, threads: int = 8) -> None:
    """Serve until interrupted; ``workers=0`` runs werkzeug's threaded server in this process."""
    _prepare()
    if workers <= 0:
        from werkzeug.serving import run_simple

        log.info("serving on http://%s:%d (single process)", host, port)
        run_simple(host, port, serving_app(), threaded=True, use_reloader=False)
        return
    from gunicorn.app.base import BaseApplication

    class _Gunicorn(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("threads", threads)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("timeout", 60)
            # Each worker builds its own pools after the fork; nothing is shared by accident.
            self.cfg.set("preload_app", False)

        def load(self) -> Any:
            return serving_app()

    _Gunicorn().run()
