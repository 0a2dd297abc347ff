"""gunicorn settings for the web process (SOAP producer and pages).

The numbers are hub.config's, which ``agenthub serve`` uses too, so the two never drift apart.
"""

from hub.config import (
    WEB_KEEPALIVE_SECONDS,
    WEB_REQUEST_TIMEOUT_SECONDS,
    WEB_THREADS,
    WEB_WORKERS,
)

bind = "127.0.0.1:8080"
worker_class = "gthread"
workers = WEB_WORKERS
threads = WEB_THREADS
# The platform's producer timeout is 29 s; a request still running after 28 s is abandoned here.
timeout = WEB_REQUEST_TIMEOUT_SECONDS
keepalive = WEB_KEEPALIVE_SECONDS
# Each worker opens its own database pools after the fork.
preload_app = False
