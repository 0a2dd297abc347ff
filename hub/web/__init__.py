"""The web side: the Flask app factory and its blueprints; the SOAP producer is mounted beside.

``create_app`` builds the app for a hub; :mod:`hub.web.server` serves it (gunicorn, or the
development server in dev and test); ``hub.wsgi:app`` is the entry point for a WSGI server.
"""
