"""The workspace's forms (Flask-WTF: every form carries and checks a CSRF token)."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import HiddenField, PasswordField, StringField
from wtforms.validators import DataRequired, Length, Regexp


class SignInForm(FlaskForm):  # type: ignore[misc]  # Flask-WTF ships no types
    """The first step of a password sign-in: login and password."""

    login = StringField(
        _l("User name"),
        validators=[DataRequired(_l("Enter your user name.")), Length(max=64)],
        render_kw={"autocomplete": "username", "autocapitalize": "none", "spellcheck": "false"},
    )
    password = PasswordField(
        _l("Password"),
        validators=[DataRequired(_l("Enter your password.")), Length(max=1024)],
        render_kw={"autocomplete": "current-password"},
    )
    next = HiddenField()


class CodeForm(FlaskForm):  # type: ignore[misc]  # Flask-WTF ships no types
    """The second step: the one-time code of the user's authenticator app."""

    code = StringField(
        _l("One-time code"),
        validators=[
            DataRequired(_l("Enter the six-digit code from your authenticator app.")),
            Regexp(r"^\s*\d{3}[\s-]?\d{3}\s*$", message=_l("The code is six digits.")),
        ],
        render_kw={
            "autocomplete": "one-time-code",
            "inputmode": "numeric",
            "spellcheck": "false",
        },
    )
