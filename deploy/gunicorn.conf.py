"""gunicorn settings for the web process (SOAP producer and pages)."""

bind = "127.0.0.1:8080"
worker_class = "gthread"
workers = 4
threads = 8
# The platform's producer timeout is 29 s; a request still running after 28 s is abandoned here.
timeout = 28
keepalive = 30
# Each worker opens its own database pools after the fork.
preload_app = False
