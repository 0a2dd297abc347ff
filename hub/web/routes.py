"""Every endpoint of the web app is classified, and the class is enforced on every request.

=============  ==================================================================================
public         anyone: sign-in pages, health, static files, error pages
authenticated  a signed-in user (a session; under ``/api/`` a bearer token); no woman's data
personal_data  a signed-in user, and the view shows a woman's data: it must write exactly one
               entry in the region's access log (:func:`hub.audit.record_access`)
=============  ==================================================================================

Mark a view with :func:`public`, :func:`authenticated` or :func:`personal_data` (a function, or a
``MethodView`` class such as flask-smorest registers), or name an endpoint whose view is not ours
with :func:`classify_endpoint`. :func:`enforce` runs before every request: an endpoint without a
class answers 500 and is logged (fail closed), and ``tests/test_web_routes.py`` walks
``app.url_map`` so none reaches main. What a signed-in user may see *in a region* is not decided
here: views get a region only through :func:`hub.web.users.scope_for`.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, abort, current_app, request
from flask_login import current_user

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any] | type)

_ATTRIBUTE = "_agenthub_access"
_REGISTRY = "agenthub_route_access"


class Access(enum.StrEnum):
    """Who may reach an endpoint."""

    PUBLIC = "public"
    AUTHENTICATED = "authenticated"
    PERSONAL_DATA = "personal_data"


def _mark(access: Access) -> Callable[[F], F]:
    def decorate(view: F) -> F:
        setattr(view, _ATTRIBUTE, access)
        return view

    return decorate


#: Anyone may reach the endpoint.
public = _mark(Access.PUBLIC)
#: A signed-in user may reach it; it shows no woman's data.
authenticated = _mark(Access.AUTHENTICATED)
#: A signed-in user may reach it; it shows a woman's data and writes one access-log entry.
personal_data = _mark(Access.PERSONAL_DATA)


def classify_endpoint(app: Flask, endpoint: str, access: Access) -> None:
    """Classify an endpoint whose view function is not ours (Flask's ``static``)."""
    app.extensions.setdefault(_REGISTRY, {})[endpoint] = access


def access_of(app: Flask, endpoint: str) -> Access | None:
    """The class of ``endpoint``, or None when it has none."""
    registered: dict[str, Access] = app.extensions.get(_REGISTRY, {})
    if endpoint in registered:
        return registered[endpoint]
    view = app.view_functions.get(endpoint)
    for candidate in (view, getattr(view, "view_class", None)):
        access = getattr(candidate, _ATTRIBUTE, None)
        if isinstance(access, Access):
            return access
    return None


def enforce() -> Any:
    """Before every request: refuse unclassified endpoints, send the signed-out to sign in."""
    endpoint = request.endpoint
    if endpoint is None:
        return None  # no route matched: Flask answers 404 or 405 itself
    access = access_of(current_app, endpoint)
    if access is None:
        log.error("endpoint %s has no access class (hub.web.routes): refused", endpoint)
        abort(500)
    if access is Access.PUBLIC or current_user.is_authenticated:
        return None
    return current_app.login_manager.unauthorized()  # type: ignore[attr-defined]
