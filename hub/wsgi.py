"""WSGI entry point for a production server: ``gunicorn hub.wsgi:app`` (see deploy/)."""

from hub.app import serving_app

app = serving_app()
