"""Signing in to the web workspace, with Flask's test client: password and one-time code, the
lockout, sessions (a new id at sign-in, idle timeout, lifetime, sign-out), the cookie, CSRF,
SITHS through the ingress, disabled accounts, and bearer tokens on the API only."""

from __future__ import annotations

import logging
import re
import statistics
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from argon2 import PasswordHasher
from flask import Blueprint, jsonify, request
from sqlalchemy import select, update

from hub.context import Hub
from hub.db.hub_tables import users, web_sessions
from hub.tenancy.access import Role, system_actor
from hub.users.accounts import change_roles, set_disabled
from hub.users.sessions import hash_session_id
from hub.users.tokens import create_token, revoke_token
from hub.web.app import create_app
from hub.web.auth import safe_next
from hub.web.routes import authenticated, public
from hub.web.users import current_actor
from tests.pki import Authority
from tests.web import LOGINS, Clock, Login, forget_spent_codes, form_token, sign_in

ALICE, BOB = LOGINS["alice"], LOGINS["bob"]
COOKIE = "agenthub"
SYSTEM = system_actor("test")


def _sid(client: Any, name: str = COOKIE) -> str | None:
    cookie = client.get_cookie(name)
    return None if cookie is None else cookie.value


def _password_step(client: Any, login: str, password: str) -> Any:
    page = client.get("/logga-in")
    return client.post(
        "/logga-in",
        data={"csrf_token": form_token(page.text), "login": login, "password": password},
    )


def _code_step(client: Any, code: str) -> Any:
    page = client.get("/logga-in/kod")
    return client.post("/logga-in/kod", data={"csrf_token": form_token(page.text), "code": code})


def _signed_in(client: Any) -> bool:
    return client.get("/").status_code == 200


def _user_row(hub: Hub, login: str) -> Any:
    with hub.db.hub.connect() as connection:
        return connection.execute(select(users).where(users.c.login == login)).one()


def test_password_and_code_sign_in_and_show_the_users_regions_in_swedish(
    client: Any, hub: Hub, web_users: dict[str, Login]
) -> None:
    answer = sign_in(client, hub, ALICE)
    assert answer.headers["Location"] == "/"
    page = client.get("/")
    assert page.status_code == 200
    assert '<html lang="sv">' in page.text
    assert "Välkommen, Alice Andersson" in page.text
    assert "Västra Götalandsregionen" in page.text and "Granskare" in page.text
    assert "lösenord och engångskod" in page.text
    # Charlie's region is not Alice's: it is not on her page.
    assert "Region Stockholm" not in page.text
    assert _user_row(hub, "alice").last_login_at is not None


def test_every_persona_sees_exactly_its_own_regions(
    app: Any, hub: Hub, web_users: dict[str, Login]
) -> None:
    expected = {
        "alice": (["Västra Götalandsregionen"], "Granskare"),
        "bob": (["Västra Götalandsregionen"], "Läsare"),
        "charlie": (["Region Stockholm"], "Granskare"),
        "olof": (["Region Stockholm", "Västra Götalandsregionen"], "Operatör"),
    }
    for login, (regions, role) in expected.items():
        client = app.test_client()
        sign_in(client, hub, LOGINS[login])
        page = client.get("/").text
        shown = [name for name in ("Region Stockholm", "Västra Götalandsregionen") if name in page]
        assert shown == regions, login
        assert role in page, login
    # The operator is told what the role shows.
    assert "aldrig uppgifter om en kvinna" in page


def test_the_start_page_sends_the_signed_out_to_sign_in_and_back(
    client: Any, hub: Hub, web_users: dict[str, Login]
) -> None:
    answer = client.get("/")
    assert answer.status_code == 302
    assert answer.headers["Location"] == "/logga-in?next=/"
    assert sign_in(client, hub, ALICE, next_url="/").headers["Location"] == "/"


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("/", "/"),
        ("/granskning?lan=14", "/granskning?lan=14"),
        ("//evil.example/", None),
        ("https://evil.example/", None),
        ("/\\evil.example", None),
        ("evil", None),
        ("", None),
        (None, None),
    ],
)
def test_only_a_path_on_this_site_is_somewhere_to_go_after_sign_in(
    given: str | None, kept: str | None
) -> None:
    assert safe_next(given) == kept


def test_an_off_site_next_is_ignored(client: Any, hub: Hub, web_users: dict[str, Login]) -> None:
    answer = sign_in(client, hub, ALICE, next_url="//evil.example/")
    assert answer.headers["Location"] == "/"


def test_a_password_alone_signs_nobody_in(
    client: Any, hub: Hub, web_users: dict[str, Login]
) -> None:
    answer = _password_step(client, "alice", ALICE.password)
    assert answer.headers["Location"] == "/logga-in/kod"
    assert not _signed_in(client)
    # The code page without a password step first sends back to the start.
    other = client.application.test_client()
    assert other.get("/logga-in/kod").headers["Location"] == "/logga-in"


def test_the_code_step_expires_five_minutes_after_the_password(
    client: Any, hub: Hub, web_users: dict[str, Login], clock: Clock
) -> None:
    _password_step(client, "alice", ALICE.password)
    page = client.get("/logga-in/kod")
    clock.advance(minutes=6)
    answer = client.post(
        "/logga-in/kod", data={"csrf_token": form_token(page.text), "code": ALICE.code()}
    )
    assert answer.status_code == 302 and answer.headers["Location"] == "/logga-in"
    assert not _signed_in(client)


def test_an_empty_form_names_each_missing_field_beside_it(
    client: Any, web_users: dict[str, Login]
) -> None:
    page = client.get("/logga-in")
    answer = client.post("/logga-in", data={"csrf_token": form_token(page.text)})
    assert answer.status_code == 200
    assert 'aria-describedby="login-error"' in answer.text and 'aria-invalid="true"' in answer.text
    assert 'id="login-error"' in answer.text and "Ange ditt användarnamn." in answer.text
    assert '<a href="#password">Ange ditt lösenord.</a>' in answer.text  # the summary's link


def test_a_wrong_password_is_refused_without_saying_why(
    client: Any, hub: Hub, web_users: dict[str, Login]
) -> None:
    answer = _password_step(client, "alice", "not-alices-password")
    assert answer.status_code == 200
    assert "Inloggningen misslyckades" in answer.text
    assert client.get("/logga-in/kod").headers["Location"] == "/logga-in"
    assert _user_row(hub, "alice").failed_logins == 1


def _without_tokens(html: str) -> str:
    """A page without what differs between any two answers: CSRF tokens and the login typed."""
    html = re.sub(r'value="[^"]*\.[^"]*"', 'value=""', html)
    return re.sub(r'(name="login"[^>]*value=")[^"]*"', r'\1"', html)


def test_an_unknown_login_answers_as_a_wrong_password_does_after_the_same_work(
    real_password_hashes: None,
    client: Any,
    hub: Hub,
    web_users: dict[str, Login],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    verified: list[str] = []
    real = PasswordHasher.verify

    def counting(self: PasswordHasher, hash: str, password: str) -> bool:
        verified.append(password)
        return real(self, hash, password)

    monkeypatch.setattr(PasswordHasher, "verify", counting)
    unknown = _password_step(client, "nobody-here", "a-guess-at-a-password")
    assert len(verified) == 1
    wrong = _password_step(client, "alice", "a-guess-at-a-password")
    assert len(verified) == 2
    assert unknown.status_code == wrong.status_code == 200
    assert _without_tokens(unknown.text) == _without_tokens(wrong.text)
    # A disabled account and a locked one answer the same, after one verification each.
    set_disabled(hub, SYSTEM, "bob", True)
    disabled = _password_step(client, "bob", BOB.password)
    assert len(verified) == 3 and _without_tokens(disabled.text) == _without_tokens(wrong.text)

    # And the time: both are one Argon2 verification, so neither is far from the other.
    def timed(login: str, rounds: int = 3) -> float:
        times = []
        for _ in range(rounds):
            page = client.get("/logga-in")
            started = time.perf_counter()
            client.post(
                "/logga-in",
                data={"csrf_token": form_token(page.text), "login": login, "password": "x" * 12},
            )
            times.append(time.perf_counter() - started)
        return statistics.median(times)

    for login in ("nobody-here", "charlie"):
        timed(login, rounds=1)  # warm; four failures in all keep Charlie's account unlocked
    unknown_time, known_time = timed("nobody-here"), timed("charlie")
    assert 1 / 3 < unknown_time / known_time < 3, (unknown_time, known_time)


def test_a_wrong_code_is_refused_and_a_code_is_good_only_once(
    client: Any, hub: Hub, web_users: dict[str, Login]
) -> None:
    forget_spent_codes(hub, "alice")
    _password_step(client, "alice", ALICE.password)
    wrong = "000000" if ALICE.code() != "000000" else "111111"
    refused = _code_step(client, wrong)
    assert refused.status_code == 200 and "Koden är fel eller redan använd" in refused.text
    assert _code_step(client, ALICE.code()).headers["Location"] == "/"
    # The same code again (someone who watched it typed) is refused.
    other = client.application.test_client()
    _password_step(other, "alice", ALICE.password)
    again = _code_step(other, ALICE.code())
    assert again.status_code == 200 and not _signed_in(other)


def test_five_failures_lock_the_account_for_fifteen_minutes_then_it_opens(
    client: Any, hub: Hub, web_users: dict[str, Login], clock: Clock
) -> None:
    for _ in range(5):
        assert _password_step(client, "alice", "wrong-password!").status_code == 200
    row = _user_row(hub, "alice")
    assert row.locked_until is not None
    # Locked: even the right password is refused, with the same answer.
    locked = _password_step(client, "alice", ALICE.password)
    assert locked.status_code == 200 and "Inloggningen misslyckades" in locked.text
    clock.advance(minutes=14)
    assert _password_step(client, "alice", ALICE.password).status_code == 200
    # Bob's account counts its own failures: it was never locked.
    bob = client.application.test_client()
    assert sign_in(bob, hub, BOB).headers["Location"] == "/"
    clock.advance(minutes=2)
    assert sign_in(client, hub, ALICE).headers["Location"] == "/"
    row = _user_row(hub, "alice")
    assert row.failed_logins == 0 and row.locked_until is None


def test_wrong_codes_count_towards_the_lockout(
    client: Any, hub: Hub, web_users: dict[str, Login]
) -> None:
    forget_spent_codes(hub, "alice")
    _password_step(client, "alice", ALICE.password)
    right = ALICE.code()
    wrong = "000000" if right != "000000" else "111111"
    for _ in range(5):
        _code_step(client, wrong)
    assert _user_row(hub, "alice").locked_until is not None
    assert _code_step(client, right).status_code == 200
    assert not _signed_in(client)


def test_the_lockout_follows_the_settings(
    hub: Hub, web_users: dict[str, Login], clock: Clock
) -> None:
    hub.settings = hub.settings.with_overrides(login_max_failures=2, login_lockout_minutes=1)
    client = create_app(hub, {"TESTING": True}).test_client()
    _password_step(client, "bob", "wrong-password!")
    assert _user_row(hub, "bob").locked_until is None
    _password_step(client, "bob", "wrong-password!")
    assert _user_row(hub, "bob").locked_until is not None
    clock.advance(seconds=61)
    assert sign_in(client, hub, BOB).headers["Location"] == "/"


def test_sign_in_gives_the_session_a_new_id_so_a_planted_one_is_worthless(
    app: Any, client: Any, hub: Hub, web_users: dict[str, Login]
) -> None:
    client.get("/logga-in")
    planted = _sid(client)
    assert planted is not None
    # Half-way (the password accepted) the session already has a new id.
    _password_step(client, "alice", ALICE.password)
    halfway = _sid(client)
    assert halfway not in (None, planted)
    holder = app.test_client()
    holder.set_cookie(COOKIE, planted)
    assert holder.get("/logga-in/kod").headers["Location"] == "/logga-in"
    sign_in(client, hub, ALICE)
    after = _sid(client)
    assert after is not None and after not in (planted, halfway)
    # The attacker who planted (or read) the id before sign-in holds nothing.
    attacker = app.test_client()
    attacker.set_cookie(COOKIE, planted)
    assert attacker.get("/").status_code == 302
    with hub.db.hub.connect() as connection:
        hashes = set(connection.execute(select(web_sessions.c.id_hash)).scalars())
    assert hash_session_id(planted) not in hashes and hash_session_id(after) in hashes
    # The table holds only hashes: the cookie's value is nowhere in it.
    assert after not in hashes


def test_a_session_ends_after_thirty_idle_minutes(
    client: Any, hub: Hub, web_users: dict[str, Login], clock: Clock
) -> None:
    sign_in(client, hub, ALICE)
    for _ in range(3):
        clock.advance(minutes=29)
        assert _signed_in(client)  # each request starts the idle time again
    clock.advance(minutes=31)
    answer = client.get("/")
    assert answer.status_code == 302 and answer.headers["Location"].startswith("/logga-in")


def test_a_session_ends_twelve_hours_after_sign_in_however_busy(
    client: Any, hub: Hub, web_users: dict[str, Login], clock: Clock
) -> None:
    sign_in(client, hub, ALICE)
    for _ in range(35):  # 11 h 40 min of a request every 20 minutes
        clock.advance(minutes=20)
        assert _signed_in(client)
    clock.advance(minutes=21)
    assert not _signed_in(client)


def test_the_cookie_in_dev_and_test_is_http_only_and_same_site(
    client: Any, hub: Hub, web_users: dict[str, Login]
) -> None:
    header = client.get("/logga-in").headers["Set-Cookie"]
    parts = [part.strip() for part in header.split(";")]
    assert parts[0].startswith("agenthub=")
    assert "HttpOnly" in parts and "Path=/" in parts and "SameSite=Lax" in parts
    # Plain http on a developer's machine: a browser would drop a Secure or __Host- cookie.
    assert "Secure" not in parts and not any(p.startswith("Domain") for p in parts)
    assert "Strict-Transport-Security" not in client.get("/logga-in").headers


def test_the_cookie_outside_dev_is_host_prefixed_and_secure(
    hub: Hub, web_users: dict[str, Login]
) -> None:
    hub.settings = hub.settings.with_overrides(env="qa")
    client = create_app(hub, {"TESTING": True}).test_client()
    # As the ingress forwards a browser's HTTPS requests (from loopback, a trusted proxy).
    client.environ_base["HTTP_X_FORWARDED_PROTO"] = "https"
    client.environ_base["HTTP_REFERER"] = "https://localhost/logga-in"
    first = client.get("/logga-in")
    parts = [part.strip() for part in first.headers["Set-Cookie"].split(";")]
    assert parts[0].startswith("__Host-agenthub=")
    assert {"Secure", "HttpOnly", "Path=/", "SameSite=Lax"} <= set(parts)
    assert not any(part.startswith("Domain") for part in parts)  # __Host- forbids one
    assert first.headers["Strict-Transport-Security"].startswith("max-age=")
    # And sign-in works with it end to end.
    assert sign_in(client, hub, ALICE).headers["Location"] == "/"
    assert client.get("/").status_code == 200
    assert client.get_cookie("agenthub") is None
    assert client.get_cookie("__Host-agenthub") is not None
    # Behind TLS, Flask-WTF also wants the form posted from this site.
    page = client.get("/")
    elsewhere = {"HTTP_REFERER": "https://evil.example/"}
    forged = client.post(
        "/logga-ut", data={"csrf_token": form_token(page.text)}, environ_base=elsewhere
    )
    assert forged.status_code == 400 and client.get("/").status_code == 200


def test_forwarded_https_is_believed_only_from_the_ingress(hub: Hub) -> None:
    hub.settings = hub.settings.with_overrides(env="qa")
    app = create_app(hub, {"TESTING": True})
    probe = Blueprint("probe", __name__)

    @probe.get("/scheme")
    @public
    def scheme() -> Any:
        return request.scheme

    app.register_blueprint(probe)
    client = app.test_client()
    https = {"HTTP_X_FORWARDED_PROTO": "https"}
    assert client.get("/scheme", environ_base=https).text == "https"
    outsider = {**https, "REMOTE_ADDR": "192.0.2.7"}
    assert client.get("/scheme", environ_base=outsider).text == "http"


def test_a_form_without_its_csrf_token_is_refused_with_a_swedish_page(
    app: Any, client: Any, hub: Hub, web_users: dict[str, Login]
) -> None:
    client.get("/logga-in")
    data = {"login": "alice", "password": ALICE.password}
    for forged in ({}, {"csrf_token": "forged"}):
        answer = client.post("/logga-in", data={**data, **forged})
        assert answer.status_code == 400
        assert "Formuläret kunde inte skickas" in answer.text
        assert '<html lang="sv">' in answer.text
    # A token of another session is no token for this one.
    other = app.test_client()
    stolen = form_token(other.get("/logga-in").text)
    assert client.post("/logga-in", data={**data, "csrf_token": stolen}).status_code == 400
    assert _user_row(hub, "alice").failed_logins == 0  # refused before any password check
    # Signed in: sign-out and the language switch want their tokens too.
    sign_in(client, hub, ALICE)
    assert client.post("/logga-ut").status_code == 400
    assert client.post("/sprak", data={"locale": "en"}).status_code == 400
    assert _signed_in(client) and '<html lang="sv">' in client.get("/").text


def test_sign_out_ends_the_session_for_good(
    app: Any, client: Any, hub: Hub, web_users: dict[str, Login]
) -> None:
    sign_in(client, hub, ALICE)
    sid = _sid(client)
    assert sid is not None
    page = client.get("/")
    answer = client.post("/logga-ut", data={"csrf_token": form_token(page.text)})
    assert answer.status_code == 302 and answer.headers["Location"] == "/logga-in"
    assert "Du är utloggad" in client.get("/logga-in").text
    assert not _signed_in(client)
    replay = app.test_client()
    replay.set_cookie(COOKIE, sid)
    assert not _signed_in(replay)
    with hub.db.hub.connect() as connection:
        row = connection.execute(
            select(web_sessions).where(web_sessions.c.id_hash == hash_session_id(sid))
        ).first()
    assert row is None


def test_a_disabled_user_cannot_sign_in_and_loses_every_session(
    app: Any, hub: Hub, web_users: dict[str, Login]
) -> None:
    desk, laptop = app.test_client(), app.test_client()
    sign_in(desk, hub, ALICE)
    sign_in(laptop, hub, ALICE)
    assert _signed_in(desk) and _signed_in(laptop)
    assert set_disabled(hub, SYSTEM, "alice", True) == 2
    assert not _signed_in(desk) and not _signed_in(laptop)
    fresh = app.test_client()
    forget_spent_codes(hub, "alice")
    refused = _password_step(fresh, "alice", ALICE.password)
    assert refused.status_code == 200 and "Inloggningen misslyckades" in refused.text
    set_disabled(hub, SYSTEM, "alice", False)
    assert sign_in(fresh, hub, ALICE).headers["Location"] == "/"


def test_a_session_of_an_account_disabled_behind_its_back_is_not_signed_in(
    client: Any, hub: Hub, web_users: dict[str, Login]
) -> None:
    """Even if its session row were left (a copy restored, a direct UPDATE), every request reads
    the account again: disabled means signed out."""
    sign_in(client, hub, ALICE)
    with hub.db.hub.begin() as connection:
        connection.execute(
            update(users).where(users.c.login == "alice").values(disabled_at=users.c.created_at)
        )
    assert not _signed_in(client)


def test_a_role_changed_counts_from_the_next_request(
    client: Any, hub: Hub, web_users: dict[str, Login]
) -> None:
    sign_in(client, hub, ALICE)
    assert "Västra Götalandsregionen" in client.get("/").text
    change_roles(hub, SYSTEM, "alice", revoke={"14": {Role.REVIEWER}}, grant={"01": {Role.VIEWER}})
    page = client.get("/").text
    assert "Västra Götalandsregionen" not in page and "Region Stockholm" in page


# --- SITHS --------------------------------------------------------------------------------------


@pytest.fixture
def cards(tmp_path: Path) -> dict[str, str]:
    """SITHS-like personal certificates (the HSA-id in the subject serialNumber), as the
    ingress forwards them: URL-escaped PEM."""
    ca = Authority(tmp_path / "pki", "test-siths-ca")
    issued = {
        "alice": ca.issue("alice", "Alice Andersson", serial_number=ALICE.hsa_id),
        "stranger": ca.issue("stranger", "Sven Okänd", serial_number="SE2321000131-ZZ9"),
        "no-hsa-id": ca.issue("plain", "Utan HSA-id"),
    }
    return {name: quote(item.cert.read_text()) for name, item in issued.items()}


def _siths(client: Any, certificate: str | None, remote: str = "127.0.0.1") -> Any:
    token = form_token(client.get("/logga-in").text)
    headers = {"X-SSL-Client-Cert": certificate} if certificate else {}
    return client.post(
        "/logga-in/siths",
        data={"csrf_token": token},
        headers=headers,
        environ_base={"REMOTE_ADDR": remote},
    )


def test_siths_sign_in_with_a_card_the_ingress_verified(
    client: Any, hub: Hub, web_users: dict[str, Login], cards: dict[str, str]
) -> None:
    client.get("/logga-in")
    before = _sid(client)
    answer = _siths(client, cards["alice"])
    assert answer.status_code == 302 and answer.headers["Location"] == "/"
    assert _sid(client) != before
    page = client.get("/").text
    assert "Välkommen, Alice Andersson" in page and "SITHS-kort" in page
    with hub.db.hub.connect() as connection:
        method = connection.execute(
            select(web_sessions.c.auth_method).where(
                web_sessions.c.id_hash == hash_session_id(_sid(client) or "")
            )
        ).scalar_one()
    assert method == "siths"


def test_siths_header_is_believed_only_from_the_ingress(
    client: Any, hub: Hub, web_users: dict[str, Login], cards: dict[str, str]
) -> None:
    # From an address that is not a trusted proxy, the header is anyone's text.
    refused = _siths(client, cards["alice"], remote="192.0.2.7")
    assert refused.status_code == 403
    assert "Inloggningen med SITHS-kort misslyckades" in refused.text
    assert not _signed_in(client)
    # The same holds when loopback is not the configured ingress.
    hub.settings = hub.settings.with_overrides(trusted_proxies=("10.9.8.7",))
    assert _siths(client, cards["alice"]).status_code == 403
    assert not _signed_in(client)


@pytest.mark.parametrize("card", ["stranger", "no-hsa-id", None])
def test_siths_without_a_known_card_signs_nobody_in(
    client: Any, hub: Hub, web_users: dict[str, Login], cards: dict[str, str], card: str | None
) -> None:
    assert _siths(client, cards[card] if card else None).status_code == 403
    assert not _signed_in(client)


def test_a_disabled_users_card_signs_nobody_in(
    client: Any, hub: Hub, web_users: dict[str, Login], cards: dict[str, str]
) -> None:
    set_disabled(hub, SYSTEM, "alice", True)
    assert _siths(client, cards["alice"]).status_code == 403
    assert not _signed_in(client)


# --- bearer tokens on the API -------------------------------------------------------------------


def _api_app(hub: Hub) -> Any:
    """The app with one API endpoint that says who the request acts as."""
    probe = Blueprint("probe", __name__, url_prefix="/api/v1")

    @probe.get("/whoami")
    @authenticated
    def whoami() -> Any:
        actor = current_actor()
        return jsonify(
            label=actor.label,
            auth=actor.auth_method,
            roles={lan: sorted(r.value for r in held) for lan, held in actor.roles.items()},
            operator=actor.operator,
        )

    app = create_app(hub, {"TESTING": True})
    app.register_blueprint(probe)
    return app


def test_a_bearer_token_acts_on_the_api_in_its_region_only(
    hub: Hub, web_users: dict[str, Login]
) -> None:
    app = _api_app(hub)
    client = app.test_client()
    issued = create_token(hub, SYSTEM, "alice", "14", label="lab system")
    bearer = {"Authorization": f"Bearer {issued.token}"}
    answer = client.get("/api/v1/whoami", headers=bearer)
    assert answer.status_code == 200
    assert answer.json == {
        "label": "user:alice",
        "auth": "token",
        "roles": {"14": ["reviewer"]},
        "operator": False,
    }
    # An operator's token is the operator's role in its one region, not everywhere.
    olof = create_token(hub, SYSTEM, "olof", "01")
    seen = client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {olof.token}"}).json
    assert seen["roles"] == {"01": ["operator"]} and seen["operator"] is False
    # A token is no way into the pages.
    assert client.get("/", headers=bearer).status_code == 302
    revoke_token(hub, SYSTEM, issued.id)
    assert client.get("/api/v1/whoami", headers=bearer).status_code == 401


def test_the_api_refuses_the_session_cookie_and_says_so_as_a_problem(
    hub: Hub, web_users: dict[str, Login]
) -> None:
    client = _api_app(hub).test_client()
    sign_in(client, hub, ALICE)
    assert _signed_in(client)
    answer = client.get("/api/v1/whoami")
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == "Bearer"
    assert answer.mimetype == "application/problem+json" and answer.json["status"] == 401
    garbage = client.get("/api/v1/whoami", headers={"Authorization": "Bearer ahub_nonsense"})
    assert garbage.status_code == 401


# --- logs ---------------------------------------------------------------------------------------


def test_no_password_code_secret_token_or_typed_login_reaches_the_logs(
    app: Any,
    client: Any,
    hub: Hub,
    web_users: dict[str, Login],
    cards: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    typed_login = "my-password-typed-here"
    _password_step(client, typed_login, "a-guess-at-a-password")
    _password_step(client, "alice", "wrong-password-typed")
    sign_in(client, hub, ALICE)
    used_code = ALICE.code()
    _siths(app.test_client(), cards["alice"])
    issued = create_token(hub, SYSTEM, "bob", "14")
    api = _api_app(hub).test_client()
    api.get("/api/v1/whoami", headers={"Authorization": f"Bearer {issued.token}"})
    _csrf_refused = client.post("/logga-ut", data={"csrf_token": "forged-token-value"})
    text = caplog.text + "\n".join(record.getMessage() for record in caplog.records)
    assert "signed in" in text  # the test would see lines, were there any to see
    secrets = [
        typed_login,
        "a-guess-at-a-password",
        "wrong-password-typed",
        ALICE.password,
        ALICE.totp_secret,
        used_code,
        issued.token,
        _sid(client) or "no session id",
        "forged-token-value",
    ]
    leaked = [secret for secret in secrets if secret in text]
    assert not leaked, leaked
