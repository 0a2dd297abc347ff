"""Error pages in the workspace's language, and RFC 9457 problem details under ``/api/``.

A region the user holds no role in is answered exactly as one that does not exist (404, from
:class:`hub.tenancy.access.NotFound`); a role that does not allow the action answers 403; a form
without a valid CSRF token answers 400. Data that can no longer be opened (the region's key was
destroyed, or what is asked for was sealed under a key since destroyed) answers 410, saying so;
a region's store that is missing answers 503. No page says more than that.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, render_template
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.http import HTTP_STATUS_CODES

from hub.db import StoreMissing
from hub.tenancy.access import Forbidden, NotFound
from hub.tenancy.keys import KeyDestroyed, Unreadable
from hub.web.problems import problem
from hub.web.users import is_api_request

log = logging.getLogger(__name__)


def _texts(status: int) -> tuple[str, str]:
    if status == 400:
        return _("The request could not be handled"), _(
            "The form could not be sent, for example because it was open too long or sent "
            "from another page. Go back, reload the page and try again."
        )
    if status == 403:
        return _("Not allowed"), _("Your role does not allow this.")
    if status == 404:
        return _("Page not found"), _(
            "There is no such page, or you have no access to it. Check the address."
        )
    if status == 405:
        return _("Not allowed"), _("The page cannot be used in this way.")
    if status == 410:
        return _("No longer readable"), _(
            "This was sealed under the region's key, which has since been destroyed: it can "
            "no longer be opened, by anyone."
        )
    if status == 413:
        return _("Too large"), _("What you sent is larger than the hub accepts.")
    if status == 503:
        return _("Not available"), _(
            "The region's store is missing on the hub. The agent's operators see why in the "
            "hub's log; give them the request id below."
        )
    return _("Something went wrong"), _(
        "The hub could not complete the request. Try again later; if it goes on, contact "
        "the agent's support and give them the request id below."
    )


def _answer(status: int, headers: list[tuple[str, str]] | None = None) -> Any:
    """The answer for ``status``: a problem under ``/api/``, else the page (keeping the
    headers the error carries, such as 405's ``Allow``)."""
    if is_api_request():
        response = problem(status, HTTP_STATUS_CODES.get(status, "Error"))
    else:
        title, message = _texts(status)
        page = render_template("error.html", status=status, title=title, message=message)
        response = Response(page, status=status, mimetype="text/html")
    for name, value in headers or []:
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def register(app: Flask) -> None:
    """Install the handlers on ``app``."""

    @app.errorhandler(CSRFError)
    def csrf_refused(error: CSRFError) -> Any:
        log.info("form refused: %s", error.description)
        return _answer(400)

    @app.errorhandler(NotFound)
    def region_not_found(error: NotFound) -> Any:
        return _answer(404)

    @app.errorhandler(Forbidden)
    def not_allowed(error: Forbidden) -> Any:
        return _answer(403)

    @app.errorhandler(KeyDestroyed)
    @app.errorhandler(Unreadable)
    def unreadable(error: Exception) -> Any:
        # The text names the region and what could not be opened, never a value.
        log.warning("refused, sealed data cannot be opened: %s", error)
        return _answer(410)

    @app.errorhandler(StoreMissing)
    def store_missing(error: StoreMissing) -> Any:
        log.error("a region's store is missing: %s", error)
        return _answer(503)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Any:
        status = error.code or 500
        if status < 400:
            return error
        return _answer(status, error.get_headers())

    @app.errorhandler(InternalServerError)
    def server_error(error: InternalServerError) -> Any:
        return _answer(500)
