"""Sign in, the second factor, SITHS sign-in and sign out (blueprint ``auth``).

A password sign-in takes two steps: the login and password (:func:`sign_in`), then the one-time
code (:func:`code`) within :data:`PENDING_MINUTES`. A SITHS sign-in is one step: the card's
certificate, verified and forwarded by the ingress. Either way the session gets a new id when
the user is signed in, and a new CSRF token with it. Every refusal says the same.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_user, logout_user

from hub.clock import utcnow
from hub.producer.identity import forwarded_hsa_id
from hub.tenancy.access import Actor
from hub.users.signin import check_code, check_password, sign_in_siths
from hub.web.forms import CodeForm, SignInForm
from hub.web.routes import public
from hub.web.users import WebUser, current_hub

log = logging.getLogger(__name__)

bp = Blueprint("auth", __name__)

#: How long the code may wait after the password was accepted.
PENDING_MINUTES = 5


def safe_next(value: str | None) -> str | None:
    """``value`` if it is a path on this site (where to go after sign-in), else None."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return None
    parts = urlsplit(value)
    return value if not parts.scheme and not parts.netloc else None


def _fresh_session() -> None:
    """Go on in a session with a new id and a new CSRF token, keeping only the language.

    At each step of signing in: an id planted in the browser before (session fixation) is then
    worth nothing, not even half-way (the password accepted, the code still to come).
    """
    locale = session.get("locale")
    session.clear()  # a cleared session gets a new id (hub.web.sessions.HubSession.clear)
    if locale:
        session["locale"] = locale


def _signed_in(actor: Actor, next_url: str | None) -> Any:
    """Sign ``actor`` in on a session with a new id and a new CSRF token."""
    _fresh_session()
    session["auth_method"] = actor.auth_method
    login_user(WebUser(actor))
    return redirect(next_url or url_for("home.index"))


def _lockout_text() -> str:
    settings = current_hub().settings
    text: str = _(
        "After %(failures)d failed attempts in a row the account is locked for %(minutes)d "
        "minutes.",
        failures=settings.login_max_failures,
        minutes=settings.login_lockout_minutes,
    )
    return text


def _pending() -> dict[str, Any] | None:
    pending = session.get("pending")
    if not isinstance(pending, dict) or not isinstance(pending.get("user_id"), int):
        return None
    try:
        since = datetime.fromisoformat(str(pending.get("at")))
    except ValueError:
        return None
    if utcnow() - since > timedelta(minutes=PENDING_MINUTES):
        session.pop("pending", None)
        return None
    return pending


@bp.route("/logga-in", methods=["GET", "POST"])
@public
def sign_in() -> Any:
    """The sign-in page: SITHS card, or user name and password."""
    if current_user.is_authenticated:
        return redirect(url_for("home.index"))
    form = SignInForm()
    if request.method == "GET":
        form.next.data = safe_next(request.args.get("next"))
    failed = False
    if form.validate_on_submit():
        login = (form.login.data or "").strip().lower()
        user_id = check_password(current_hub(), login, form.password.data or "")
        if user_id is not None:
            _fresh_session()
            session["pending"] = {
                "user_id": user_id,
                "at": utcnow().isoformat(),
                "next": safe_next(form.next.data),
            }
            return redirect(url_for("auth.code"))
        failed = True
    return render_template(
        "auth/sign_in.html",
        form=form,
        failed=failed,
        lockout=_lockout_text(),
        next=form.next.data,
    )


@bp.route("/logga-in/kod", methods=["GET", "POST"])
@public
def code() -> Any:
    """The second step of a password sign-in: the one-time code."""
    if current_user.is_authenticated:
        return redirect(url_for("home.index"))
    pending = _pending()
    if pending is None:
        flash(_("Start by entering your user name and password."), "info")
        return redirect(url_for("auth.sign_in"))
    form = CodeForm()
    failed = False
    if form.validate_on_submit():
        actor = check_code(current_hub(), pending["user_id"], form.code.data or "")
        if actor is not None:
            return _signed_in(actor, safe_next(pending.get("next")))
        failed = True
    return render_template("auth/code.html", form=form, failed=failed, lockout=_lockout_text())


@bp.post("/logga-in/siths")
@public
def siths() -> Any:
    """Sign in with the SITHS card the ingress verified (forwarded in AGENTHUB_CERT_HEADER)."""
    hub = current_hub()
    settings = hub.settings
    next_url = safe_next(request.form.get("next"))
    certificate = request.headers.get(settings.cert_header)
    hsa_id = forwarded_hsa_id(settings, request.remote_addr, certificate)
    if hsa_id is not None:
        actor = sign_in_siths(hub, hsa_id)
        if actor is not None:
            return _signed_in(actor, next_url)
    else:
        log.info("SITHS sign-in refused: no verified certificate from a trusted proxy")
    form = SignInForm()
    form.next.data = next_url
    page = render_template(
        "auth/sign_in.html",
        form=form,
        failed=False,
        siths_failed=True,
        lockout=_lockout_text(),
        next=next_url,
    )
    return page, 403


@bp.post("/logga-ut")
@public
def sign_out() -> Any:
    """Sign out: the session ends (its row is deleted) whatever state it was in."""
    logout_user()
    locale = session.get("locale")
    session.clear()
    if locale:
        session["locale"] = locale
    flash(_("You are signed out."), "info")
    return redirect(url_for("auth.sign_in"))
