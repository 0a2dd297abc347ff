"""The workspace's languages (Flask-Babel): Swedish, its users' language, and English.

Every text is written in English in the code and templates and goes through ``gettext``;
``hub/web/translations`` holds a Swedish and an English catalogue (``.po``, compiled ``.mo``
beside it, both in the wheel). After changing texts run ``scripts/i18n`` (extract, update,
compile); ``tests/test_web_i18n.py`` fails while a text has no Swedish translation or a ``.mo``
is older than its ``.po``.
"""

from __future__ import annotations

from flask import Flask, session
from flask_babel import Babel

#: The languages the workspace speaks; the first is the default.
LOCALES = ("sv", "en")
#: The name of each language in itself, for the switch.
LOCALE_NAMES = {"sv": "Svenska", "en": "English"}


def select_locale() -> str:
    """The language of this request: the one chosen in the session, else Swedish."""
    chosen = session.get("locale")
    return chosen if chosen in LOCALES else LOCALES[0]


def install(app: Flask) -> Babel:
    """Set Flask-Babel up on ``app``."""
    app.config.setdefault("BABEL_DEFAULT_LOCALE", LOCALES[0])
    app.config.setdefault("BABEL_DEFAULT_TIMEZONE", "Europe/Stockholm")
    return Babel(app, locale_selector=select_locale)
