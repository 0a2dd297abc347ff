"""WSGI entry point for a production server: ``gunicorn hub.wsgi:app`` (see deploy/)."""

from hub.app import create_app

app = create_app()
