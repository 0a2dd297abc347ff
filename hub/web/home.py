"""The landing page of a signed-in user, and the language switch (blueprint ``home``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Blueprint, redirect, render_template, request, session, url_for
from flask_babel import lazy_gettext as _l

from hub.tenancy.access import Permission, Role
from hub.tenancy.registry import list_regions
from hub.web.auth import safe_next
from hub.web.i18n import LOCALES
from hub.web.routes import authenticated, public
from hub.web.users import current_actor, current_hub, scope_for

bp = Blueprint("home", __name__)

ROLE_NAMES = {
    Role.REVIEWER: _l("Reviewer"),
    Role.VIEWER: _l("Viewer"),
    Role.SUBMITTER: _l("Submitter"),
    Role.OPERATOR: _l("Operator"),
}
ROLE_TEXTS = {
    Role.REVIEWER: _l("performs the secrecy review: opens and decides records"),
    Role.VIEWER: _l("reads what was sent and received; decides nothing"),
    Role.SUBMITTER: _l("delivers extracts and enters records by hand"),
    Role.OPERATOR: _l(
        "runs the hub for the agent: metadata and masked personal identity numbers only"
    ),
}
AUTH_NAMES = {
    "password+totp": _l("password and one-time code"),
    "siths": _l("SITHS card"),
}


@dataclass(frozen=True)
class RegionRow:
    """One region on the landing page and the roles held there."""

    lan: str
    name: str
    roles: list[Role]


@bp.get("/")
@authenticated
def index() -> Any:
    """The user's regions and roles."""
    actor = current_actor()
    if actor.operator:
        with current_hub().db.hub.connect() as connection:
            lans = [region.lan_code for region in list_regions(connection)]
    else:
        lans = sorted(actor.roles)
    rows = []
    for lan in lans:
        scope = scope_for(lan, Permission.READ_METADATA)
        rows.append(RegionRow(lan, scope.region.name, sorted(actor.roles_in(lan))))
    held = sorted({role for row in rows for role in row.roles})
    return render_template(
        "home/index.html",
        actor=actor,
        rows=rows,
        held=held,
        role_names=ROLE_NAMES,
        role_texts=ROLE_TEXTS,
        auth_name=AUTH_NAMES.get(actor.auth_method or "", actor.auth_method),
    )


@bp.post("/sprak")
@public
def language() -> Any:
    """Switch the workspace's language (kept in the session)."""
    chosen = request.form.get("locale")
    if chosen in LOCALES:
        session["locale"] = chosen
    return redirect(safe_next(request.form.get("next")) or url_for("home.index"))
