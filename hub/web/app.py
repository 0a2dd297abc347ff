"""The application factory: Flask for pages and health, the SOAP producer mounted beside it."""

from __future__ import annotations

import gc
from typing import Any

from flask import Flask
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from hub.context import Hub, build_hub
from hub.contract.names import ENDPOINT_PATH
from hub.producer.endpoint import ProducerEndpoint
from hub.web import health


def create_app(hub: Hub | None = None, test_config: dict[str, Any] | None = None) -> Flask:
    """Application factory: the hub's services from the environment unless ``hub`` is given.

    The producer is its own WSGI app at the contract's endpoint path: SOAP calls never pass
    through Flask's request handling, sessions or blueprints.
    """
    hub = hub or build_hub()
    app = Flask(__name__)
    app.config.from_mapping(SECRET_KEY=None, MAX_CONTENT_LENGTH=hub.settings.max_body_bytes)
    if test_config:
        app.config.update(test_config)
    app.extensions["agenthub"] = hub
    app.register_blueprint(health.bp)
    app.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, {ENDPOINT_PATH: ProducerEndpoint(hub)}
    )
    return app


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
