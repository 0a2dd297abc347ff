"""Fixtures and helpers for tests of the web workspace (a pytest plugin of tests/conftest.py).

- :data:`LOGINS` and the ``web_users`` fixture: the personas as real accounts with known
  passwords and TOTP secrets: Alice reviews for 14, Bob views 14, Charlie reviews for 01 (and
  must see nothing of 14), Olof is the agent's operator (metadata only).
- :func:`sign_in` (Flask test client) and :func:`signed_in` (a browser page): a full sign-in with
  password and one-time code. :func:`form_token` reads a page's CSRF token.
- ``clock``: moves the hub's idea of now (idle timeouts, lockouts) without waiting.
- ``browser`` and ``page``: Debian's Chromium driven by Playwright (never a browser Playwright
  downloads); ``page`` records CSP violations and fails the test on any.
- :func:`axe_check`: axe-core (npm) in the page; fails on serious or critical violations.

Use with the ``live_server`` fixture (the app on loopback): ``page.goto(live_server.url + "/")``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from sqlalchemy import update

from hub.clock import utcnow as real_utcnow
from hub.context import Hub
from hub.db.hub_tables import users
from hub.tenancy.access import Actor, Role, system_actor
from hub.tenancy.registry import MemberRegion
from hub.users import totp
from hub.users.accounts import add_user

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = Path(os.environ.get("AGENTHUB_TEST_CHROMIUM", "/usr/bin/chromium"))
AXE = REPO / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@dataclass(frozen=True)
class Login:
    """A persona's account: how it signs in, and what it holds."""

    login: str
    name: str
    hsa_id: str
    password: str
    totp_secret: str
    roles: dict[str, set[Role]] = field(default_factory=dict)
    operator: bool = False

    def code(self, now: datetime | None = None) -> str:
        """The one-time code of this account at ``now`` (default: the hub's now)."""
        return totp.code_at(self.totp_secret, now or _now())


# Test-only secrets: base32 of fixed bytes, never used outside tests.
LOGINS = {
    "alice": Login(
        "alice",
        "Alice Andersson",
        "SE2321000131-A1",
        "alice-correct-horse",
        "JBSWY3DPEHPK3PXPALICEAAAAAAAAAAA",
        {"14": {Role.REVIEWER}},
    ),
    "bob": Login(
        "bob",
        "Bob Berg",
        "SE2321000131-B2",
        "bob-battery-staple",
        "JBSWY3DPEHPK3PXPBOBBBBBBBBBBBBBB",
        {"14": {Role.VIEWER}},
    ),
    "charlie": Login(
        "charlie",
        "Charlie Carlsson",
        "SE2321000016-C3",
        "charlie-tr0ub4dor-3",
        "JBSWY3DPEHPK3PXPCHARLIECCCCCCCCC",
        {"01": {Role.REVIEWER}},
    ),
    "olof": Login(
        "olof",
        "Olof Olsson",
        "SE0000000000-O4",
        "olof-operates-all-day",
        "JBSWY3DPEHPK3PXPOLOFOOOOOOOOOOOO",
        operator=True,
    ),
}


class Clock:
    """The hub's now, moved forward on demand (sign-in, sessions, tokens read it)."""

    MODULES = ("hub.users.signin", "hub.users.tokens", "hub.web.sessions", "hub.web.auth")

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.offset = timedelta(0)
        for module in self.MODULES:
            monkeypatch.setattr(f"{module}.utcnow", self.now)

    def now(self) -> datetime:
        """The hub's now."""
        return real_utcnow() + self.offset

    def advance(self, **delta: float) -> None:
        """Move now forward by ``timedelta(**delta)``."""
        self.offset += timedelta(**delta)


_clock: Clock | None = None


def _now() -> datetime:
    return _clock.now() if _clock is not None else real_utcnow()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    """The hub's now, under the test's control."""
    global _clock
    _clock = Clock(monkeypatch)
    yield _clock
    _clock = None


@pytest.fixture(autouse=True)
def quick_password_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2id with tiny costs, so that making the personas' accounts takes milliseconds, not
    seconds (the real parameters: ``real_password_hashes`` and tests/test_users.py)."""
    monkeypatch.setattr(
        "hub.users.passwords._hasher",
        PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1),
    )


@pytest.fixture
def real_password_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The production's Argon2id parameters, for a test about what hashing costs."""
    monkeypatch.setattr("hub.users.passwords._hasher", PasswordHasher())


def create_login(hub: Hub, persona: Login) -> int:
    """Make ``persona``'s account, with its known TOTP secret; returns the user id."""
    add_user(
        hub,
        system_actor("test"),
        login=persona.login,
        name=persona.name,
        hsa_id=persona.hsa_id,
        roles=persona.roles,
        operator=persona.operator,
        password=persona.password,
    )
    sealed = totp.seal_secret(hub.keys, persona.login, persona.totp_secret)
    with hub.db.hub.begin() as connection:
        connection.execute(
            update(users).where(users.c.login == persona.login).values(totp_secret_enc=sealed)
        )
        user_id: int = connection.execute(
            users.select().with_only_columns(users.c.id).where(users.c.login == persona.login)
        ).scalar_one()
    return user_id


@pytest.fixture
def web_users(hub: Hub, regions_ab: tuple[MemberRegion, MemberRegion]) -> dict[str, Login]:
    """The personas' accounts (regions 14 and 01 registered)."""
    for persona in LOGINS.values():
        create_login(hub, persona)
    return LOGINS


def forget_spent_codes(hub: Hub, login: str) -> None:
    """Let a test sign a persona in again within the same 30 s (a code is accepted only once)."""
    with hub.db.hub.begin() as connection:
        connection.execute(update(users).where(users.c.login == login).values(totp_last_step=None))


_TOKEN_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def form_token(html: str) -> str:
    """The CSRF token of the first form in a page."""
    found = _TOKEN_RE.search(html)
    assert found, "no CSRF token in the page"
    return found.group(1)


def sign_in(client: Any, hub: Hub, persona: Login, *, next_url: str | None = None) -> Any:
    """Sign ``persona`` in on a Flask test client (password, then code); returns the answer
    of the code step (a redirect)."""
    forget_spent_codes(hub, persona.login)
    page = client.get("/logga-in" + (f"?next={next_url}" if next_url else ""))
    data = {"csrf_token": form_token(page.text), "login": persona.login}
    answer = client.post(
        "/logga-in", data={**data, "password": persona.password, "next": next_url or ""}
    )
    assert answer.status_code == 302 and answer.headers["Location"].endswith("/logga-in/kod"), (
        answer.status_code,
        answer.text[:500],
    )
    page = client.get("/logga-in/kod")
    answer = client.post(
        "/logga-in/kod", data={"csrf_token": form_token(page.text), "code": persona.code()}
    )
    assert answer.status_code == 302, answer.text[:500]
    return answer


def actor_of_login(persona: Login) -> Actor:
    """The actor a persona acts as once signed in (without its user id)."""
    return Actor(
        kind="user",
        label=f"user:{persona.login}",
        name=persona.name,
        hsa_id=persona.hsa_id,
        roles={lan: frozenset(held) for lan, held in persona.roles.items()},
        operator=persona.operator,
        auth_method="password+totp",
    )


# --- the browser --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's Chromium under Playwright, headless, for the whole test session."""
    if not CHROMIUM.exists() or not AXE.exists():
        missing = CHROMIUM if not CHROMIUM.exists() else AXE
        if os.environ.get("CI") == "true":
            pytest.fail(f"{missing} is missing: scripts/test installs it")
        pytest.skip(f"{missing} is missing (apt-get install chromium; npm ci)")
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@dataclass
class PageProblems:
    """What a page's console said that a test must not let pass."""

    csp_violations: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context (no cookies) and page; fails the test on a CSP violation or a
    script error in any page it showed."""
    context = browser.new_context(locale="sv-SE")
    tab = context.new_page()
    problems = PageProblems()

    def console(message: Any) -> None:
        text = message.text
        if "Content Security Policy" in text:
            problems.csp_violations.append(text)
        elif message.type == "error" and "Failed to load resource" not in text:
            problems.errors.append(text)

    tab.on("console", console)
    tab.on("pageerror", lambda error: problems.errors.append(str(error)))
    tab.problems = problems
    yield tab
    context.close()
    assert not problems.csp_violations, problems.csp_violations
    assert not problems.errors, problems.errors


def signed_in(page: Any, base_url: str, hub: Hub, persona: Login) -> Any:
    """Sign ``persona`` in through the browser as a person would; returns the page (on Start)."""
    forget_spent_codes(hub, persona.login)
    page.goto(f"{base_url}/logga-in")
    page.get_by_label("Användarnamn", exact=True).fill(persona.login)
    page.get_by_label("Lösenord", exact=True).fill(persona.password)
    page.get_by_role("button", name="Fortsätt").click()
    page.wait_for_url("**/logga-in/kod")
    page.get_by_label("Engångskod", exact=True).fill(persona.code())
    page.get_by_role("button", name="Logga in", exact=True).click()
    page.wait_for_url(f"{base_url}/")
    return page


#: Impacts that fail a page (axe's four: minor, moderate, serious, critical).
FAILING_IMPACTS = ("serious", "critical")
_axe_source: str | None = None


def axe_check(page: Any, *, tags: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """Run axe-core in ``page``; fail on serious or critical violations. Returns every violation
    (minor and moderate ones too) for a test that wants to look closer.

    axe is evaluated through the DevTools protocol, which the page's CSP does not govern: the
    page itself still has no inline script.
    """
    global _axe_source
    if _axe_source is None:
        _axe_source = AXE.read_text(encoding="utf-8")
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(_axe_source)
    options: dict[str, Any] = {"resultTypes": ["violations"]}
    if tags:
        options["runOnly"] = {"type": "tag", "values": list(tags)}
    result = page.evaluate("options => window.axe.run(document, options)", options)
    violations: list[dict[str, Any]] = result["violations"]
    failing = [v for v in violations if v.get("impact") in FAILING_IMPACTS]
    if failing:
        lines = [
            f"{v['id']} ({v['impact']}): {v['help']} — "
            + "; ".join(node["target"][0] for node in v["nodes"][:5])
            for v in failing
        ]
        pytest.fail(
            f"axe: {len(failing)} serious or critical violation(s) on {page.url}:\n"
            + "\n".join(lines)
        )
    return violations
