"""The web side: the Flask app factory and its blueprints; the SOAP producer is mounted beside.

``create_app`` builds the app for a hub; :mod:`hub.web.server` serves it (gunicorn, or the
development server in dev and test); ``hub.wsgi:app`` is the entry point for a WSGI server.

The chassis every page and API endpoint is built on (docs/web.md): :mod:`~hub.web.routes` (each
endpoint public, authenticated or personal data), :mod:`~hub.web.users` (the signed-in
:class:`~hub.tenancy.access.Actor`, ``scope_for``), :mod:`~hub.web.sessions` (server-side
sessions), :mod:`~hub.web.security` (request id, headers), :mod:`~hub.web.errors`,
:mod:`~hub.web.i18n`; the blueprints :mod:`~hub.web.auth` (sign-in) and :mod:`~hub.web.home`.
"""
