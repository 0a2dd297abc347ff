"""The signed-in user of a request (Flask-Login), as the :class:`Actor` services act for.

- Pages: the session names the account; :func:`load_session_user` reads it and its roles on
  every request, so a disabled account or a revoked role counts from the next request on.
- ``/api/``: only ``Authorization: Bearer <token>`` (:func:`hub.users.tokens.actor_for_token`);
  the session cookie is not accepted there. The API is exempt from CSRF tokens, which is safe
  only because a browser never sends a bearer token by itself; a cookie it sends by itself.

Views reach a region only through :func:`scope_for`, which asks
:func:`hub.tenancy.access.region_scope`: a region the user holds no role in answers 404.
"""

from __future__ import annotations

from typing import Any

from flask import Request, current_app, flash, redirect, request, session, url_for
from flask_babel import gettext as _
from flask_login import LoginManager, UserMixin, current_user

from hub.context import Hub
from hub.tenancy.access import Actor, Permission, RegionScope, region_scope
from hub.users.signin import load_actor
from hub.users.tokens import actor_for_token
from hub.web.problems import problem

API_PREFIX = "/api/"


class WebUser(UserMixin):  # type: ignore[misc]  # Flask-Login ships no types
    """Flask-Login's user: a wrapper of the :class:`Actor` the request acts as."""

    def __init__(self, actor: Actor) -> None:
        assert actor.user_id is not None
        self.actor = actor

    def get_id(self) -> str:
        """The account's id, as Flask-Login keeps it in the session."""
        return str(self.actor.user_id)


def current_hub() -> Hub:
    """The hub this app serves."""
    hub: Hub = current_app.extensions["agenthub"]
    return hub


def is_api_request(req: Request | None = None) -> bool:
    """Whether a request is for the JSON API (bearer tokens, no cookies, no CSRF tokens)."""
    return (req or request).path.startswith(API_PREFIX)


def current_actor() -> Actor:
    """The signed-in actor of this request (views classified authenticated or personal data)."""
    user = current_user._get_current_object()
    if not isinstance(user, WebUser):
        raise RuntimeError("no signed-in user: is the view classified public by mistake?")
    return user.actor


def scope_for(lan: str, permission: Permission) -> RegionScope:
    """Region ``lan``'s scope for the signed-in actor; raises NotFound (404) or Forbidden (403)."""
    return region_scope(current_hub(), current_actor(), lan, permission)


def load_session_user(user_id: str) -> WebUser | None:
    """Flask-Login's user loader: the session's account, unless disabled or gone."""
    if is_api_request():
        return None
    try:
        account = int(user_id)
    except ValueError:
        return None
    actor = load_actor(current_hub(), account, str(session.get("auth_method") or "unknown"))
    if actor is None:
        # Disabled or deleted since the session began: the session ends here.
        session.clear()
        return None
    return WebUser(actor)


def load_bearer_user(req: Request) -> WebUser | None:
    """Flask-Login's request loader: a bearer token, on the API only."""
    if not is_api_request(req):
        return None
    scheme, _, token = req.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    actor = actor_for_token(current_hub(), token.strip())
    return WebUser(actor) if actor is not None else None


def unauthorized() -> Any:
    """Not signed in: the API answers 401; a page sends the browser to sign in, then back."""
    if is_api_request():
        response = problem(401, "Unauthorized", "a valid bearer token is required")
        response.headers["WWW-Authenticate"] = "Bearer"
        return response
    flash(_("Sign in to continue."), "info")
    target = request.full_path if request.query_string else request.path
    return redirect(url_for("auth.sign_in", next=target))


def make_login_manager() -> LoginManager:
    """The app's Flask-Login manager (no remember-me cookie; sessions are server-side)."""
    manager = LoginManager()
    # The session id is rotated at sign-in and the session ends on idle and at its lifetime;
    # Flask-Login's IP/agent fingerprint would only sign out people whose address changes.
    manager.session_protection = None
    manager.user_loader(load_session_user)
    manager.request_loader(load_bearer_user)
    manager.unauthorized_handler(unauthorized)
    return manager
