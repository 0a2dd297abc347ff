"""Flask's session, kept server-side in ``hub.web_sessions`` (see :mod:`hub.users.sessions`).

The cookie (docs/web.md):

- outside dev and test: ``__Host-agenthub``, ``Secure``, ``HttpOnly``, ``SameSite=Lax``,
  ``Path=/``, no ``Domain``: only this host over HTTPS ever gets it back;
- in dev and test (plain ``http://127.0.0.1``): ``agenthub`` without ``Secure``, since a browser
  keeps neither a ``Secure`` cookie nor a ``__Host-`` one from an http page; everything else is
  the same.

It is a browser-session cookie (no ``Max-Age``); the server alone decides when a session ends.
A visitor who has nothing in their session (health checks, static files, the producer) gets no
row and no cookie. :meth:`HubSession.regenerate` gives a session a new id (at sign-in): the old
row is deleted, so an id planted before sign-in (session fixation) is worth nothing after it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Flask, Request, Response
from flask.sessions import SessionInterface, SessionMixin
from werkzeug.datastructures import CallbackDict

from hub.clock import utcnow
from hub.context import Hub
from hub.users import sessions as store

#: A request within this long of the last one that changed nothing does not write the row: the
#: idle timeout is kept to within this resolution.
TOUCH_RESOLUTION = timedelta(minutes=1)

SECURE_COOKIE = "__Host-agenthub"
DEV_COOKIE = "agenthub"


class HubSession(CallbackDict[str, Any], SessionMixin):
    """A session whose data lives in the database; the cookie holds only its random id."""

    def __init__(
        self, initial: dict[str, Any] | None = None, stored: store.StoredSession | None = None
    ) -> None:
        def changed(session: HubSession) -> None:
            session.modified = True

        super().__init__(initial or {}, changed)
        self.stored = stored
        self.new = stored is None
        self.modified = False
        self.regenerated = False

    def clear(self) -> None:
        """Empty the session; should anything be put in it again, it gets a new id."""
        super().clear()
        self.regenerated = True

    def regenerate(self) -> None:
        """Give this session a new id when the response is sent (and end the old one)."""
        self.regenerated = True
        self.modified = True


def cookie_name(hub: Hub) -> str:
    """The session cookie's name: ``__Host-agenthub``, or ``agenthub`` in dev and test."""
    return DEV_COOKIE if hub.settings.is_dev else SECURE_COOKIE


class HubSessionInterface(SessionInterface):
    """Opens and saves :class:`HubSession` in ``hub.web_sessions``."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def open_session(self, app: Flask, request: Request) -> HubSession:
        """The request's session: the live one its cookie names, or a new empty one."""
        sid = request.cookies.get(cookie_name(self.hub))
        if sid and store.looks_like_session_id(sid):
            with self.hub.db.hub.connect() as connection:
                stored = store.load(connection, sid, utcnow())
            if stored is not None:
                return HubSession(stored.data, stored)
        return HubSession()

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        """Write what changed, rotate the id when asked, and set or clear the cookie."""
        from flask import request

        assert isinstance(session, HubSession)
        name = cookie_name(self.hub)
        stored = session.stored
        now = utcnow()
        settings = self.hub.settings
        user_id = _int(session.get("_user_id"))
        auth_method = session.get("auth_method") if user_id is not None else None
        if not session:
            if stored is not None:
                with self.hub.db.hub.begin() as connection:
                    store.end(connection, stored.id_hash)
            if request.cookies.get(name) is not None:
                response.delete_cookie(name, path="/", secure=not settings.is_dev, httponly=True)
            return
        if stored is None or session.regenerated:
            with self.hub.db.hub.begin() as connection:
                if stored is not None:
                    store.end(connection, stored.id_hash)
                sid = store.create(
                    connection,
                    settings,
                    now,
                    user_id=user_id,
                    auth_method=auth_method,
                    data=dict(session),
                )
            response.set_cookie(
                name,
                sid,
                path="/",
                secure=not settings.is_dev,
                httponly=True,
                samesite="Lax",
            )
            response.vary.add("Cookie")
            return
        if session.modified or now - stored.last_seen_at >= TOUCH_RESOLUTION:
            with self.hub.db.hub.begin() as connection:
                store.save(
                    connection,
                    settings,
                    stored,
                    now,
                    user_id=user_id,
                    auth_method=auth_method,
                    data=dict(session) if session.modified else None,
                )


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None
