"""The application factory: Flask for pages and health, the SOAP producer mounted beside it.

The web chassis (docs/web.md): server-side sessions (:mod:`hub.web.sessions`), Flask-Login's
signed-in user as an :class:`~hub.tenancy.access.Actor` (:mod:`hub.web.users`), CSRF tokens on
every form (Flask-WTF), Swedish and English (Flask-Babel, :mod:`hub.web.i18n`), a request id and
security headers on every answer (:mod:`hub.web.security`), error pages (:mod:`hub.web.errors`),
and a class for every endpoint, enforced before every request (:mod:`hub.web.routes`).
"""

from __future__ import annotations

import gc
from typing import Any

from flask import Flask, request
from flask_babel import get_locale
from flask_wtf.csrf import CSRFProtect
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from hub.context import Hub, build_hub
from hub.contract.names import ENDPOINT_PATH
from hub.producer.endpoint import ProducerEndpoint
from hub.web import auth, errors, health, home, i18n, security
from hub.web.routes import Access, classify_endpoint, enforce
from hub.web.sessions import HubSessionInterface
from hub.web.users import make_login_manager

#: The app's CSRF protection; a blueprint that takes no cookies (the bearer-token API) is
#: exempted with ``csrf.exempt(blueprint)``.
csrf = CSRFProtect()


def create_app(hub: Hub | None = None, test_config: dict[str, Any] | None = None) -> Flask:
    """Application factory: the hub's services from the environment unless ``hub`` is given.

    The producer is its own WSGI app at the contract's endpoint path: SOAP calls never pass
    through Flask's request handling, sessions or blueprints.
    """
    hub = hub or build_hub()
    app = Flask(__name__)
    app.config.from_mapping(
        # Signs CSRF tokens; derived from the master key, so every web node has the same one.
        SECRET_KEY=hub.keys.derive("web-secret-key"),
        MAX_CONTENT_LENGTH=hub.settings.max_body_bytes,
        # A form's token lasts as long as its session does (which ends on idle and lifetime).
        WTF_CSRF_TIME_LIMIT=None,
    )
    if test_config:
        app.config.update(test_config)
    app.extensions["agenthub"] = hub
    app.jinja_env.trim_blocks = True
    app.jinja_env.lstrip_blocks = True
    app.session_interface = HubSessionInterface(hub)
    # Order of what runs before a view: the request id, the CSRF check, the route's class.
    security.install(app, hub)
    csrf.init_app(app)
    make_login_manager().init_app(app)
    i18n.install(app)
    app.before_request(enforce)
    errors.register(app)
    app.context_processor(_template_globals)
    for blueprint in (health.bp, auth.bp, home.bp):
        app.register_blueprint(blueprint)
    classify_endpoint(app, "static", Access.PUBLIC)
    pages = security.TrustedProxyScheme(app.wsgi_app, hub.settings)
    app.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
        pages, {ENDPOINT_PATH: ProducerEndpoint(hub)}
    )
    return app


def _template_globals() -> dict[str, Any]:
    return {
        "current_locale": str(get_locale() or i18n.LOCALES[0]),
        "locale_names": i18n.LOCALE_NAMES,
        "here": request.full_path if request.query_string else request.path,
    }


def serving_app(hub: Hub | None = None) -> Flask:
    """The app for a process that serves calls (on ``hub`` if given), its start-up heap frozen.

    Everything built until now (modules, the compiled schema, Spyne's interface, pools) lives as
    long as the process. ``gc.freeze()`` takes it out of the cyclic collector's view, so the
    collections that every call's garbage triggers no longer walk those hundred thousand objects
    each time.
    """
    app = create_app(hub)
    gc.freeze()
    return app
