"""WSGI entry point for a production server: ``gunicorn hub.wsgi:app`` (see deploy/)."""

from hub.web.app import serving_app

app = serving_app()
