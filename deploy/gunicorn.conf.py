"""gunicorn settings for the web process (SOAP producer and pages).

The numbers are hub.config's, which ``agenthub serve`` uses too, so the two never drift apart.
Per node, two things come from the environment: ``AGENTHUB_BIND`` (the systemd unit
``agenthub-web@PORT`` sets ``127.0.0.1:PORT``) and, to size a node differently from the
default, gunicorn's own ``GUNICORN_CMD_ARGS`` (e.g. ``--workers=8``), which wins over this file.
With ``AGENTHUB_LOG_FORMAT=json`` gunicorn's own log lines are JSON too, masked like the app's.
"""

import os

from hub.config import (
    WEB_KEEPALIVE_SECONDS,
    WEB_READ_TIMEOUT_SECONDS,
    WEB_REQUEST_TIMEOUT_SECONDS,
    WEB_THREADS,
    WEB_WORKERS,
)
from hub.web.gthread import worker_hook

bind = os.environ.get("AGENTHUB_BIND", "127.0.0.1:8080")
worker_class = "gthread"
workers = WEB_WORKERS
threads = WEB_THREADS
# The platform's producer timeout is 29 s; a request still running after 28 s is abandoned here.
timeout = WEB_REQUEST_TIMEOUT_SECONDS
keepalive = WEB_KEEPALIVE_SECONDS
# On SIGTERM, calls in flight get as long to finish as a call may take at all.
graceful_timeout = WEB_REQUEST_TIMEOUT_SECONDS + 2
# `timeout` is only a heartbeat: each worker also reads every request (headers and body) within
# WEB_READ_TIMEOUT_SECONDS of its first byte, and masks personnummer in gunicorn's own log.
post_worker_init = worker_hook(WEB_READ_TIMEOUT_SECONDS)
# Each worker opens its own database pools after the fork.
preload_app = False
# No access log here: nginx keeps one per door, and the app logs what it did.
accesslog = None

if os.environ.get("AGENTHUB_LOG_FORMAT", "text").lower() == "json":
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"mask": {"()": "hub.logs.MaskPersonnummer"}},
        "formatters": {"json": {"()": "hub.logs.JsonFormatter"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "filters": ["mask"],
                "stream": "ext://sys.stderr",
            }
        },
        # The app's own records too (hub.logs.configure_logging keeps a masked root handler).
        "root": {"handlers": ["stderr"], "level": "INFO"},
        "loggers": {
            "gunicorn.error": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
            "gunicorn.access": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        },
    }
