"""The workspace in a real headless Chromium (Debian's, driven by Playwright): signing in as a
person does, keyboard use, no CSP violation, and axe-core on every page with no serious or
critical violation (WCAG 2.1 AA)."""

from __future__ import annotations

from typing import Any

import pytest

from hub.context import Hub
from tests.conftest import LiveServer
from tests.web import LOGINS, Login, axe_check, signed_in

pytestmark = pytest.mark.browser

WCAG_AA = ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa")


def _press(page: Any, button: str, *, exact: bool = False) -> None:
    """Press a button that posts a form, and wait for the page that answers."""
    with page.expect_navigation():
        page.get_by_role("button", name=button, exact=exact).click()


def _check(page: Any) -> None:
    """axe on the page, every rule; then once more restricted to WCAG 2.1 A and AA, so a
    violation of the standard is reported as such whatever its impact."""
    axe_check(page)
    wcag = axe_check(page, tags=WCAG_AA)
    assert not wcag, [(v["id"], v["impact"]) for v in wcag]


def test_a_reviewer_signs_in_with_password_and_code_and_signs_out(
    page: Any, live_server: LiveServer, hub: Hub, web_users: dict[str, Login]
) -> None:
    signed_in(page, live_server.url, hub, LOGINS["alice"])
    assert page.get_by_role("heading", level=1).inner_text() == "Välkommen, Alice Andersson"
    table = page.get_by_role("table", name="Dina regioner och roller")
    assert "Västra Götalandsregionen" in table.inner_text()
    assert "Granskare" in table.inner_text()
    _check(page)
    page.get_by_role("button", name="Logga ut").click()
    page.wait_for_url("**/logga-in")
    assert "Du är utloggad" in page.inner_text("main")
    page.goto(live_server.url + "/")
    assert page.url.startswith(live_server.url + "/logga-in?next=")


@pytest.mark.parametrize("login", ["bob", "charlie", "olof"])
def test_the_start_page_of_every_persona_passes_axe(
    page: Any, live_server: LiveServer, hub: Hub, web_users: dict[str, Login], login: str
) -> None:
    signed_in(page, live_server.url, hub, LOGINS[login])
    _check(page)


def test_the_sign_in_pages_pass_axe_in_every_state(
    page: Any, live_server: LiveServer, hub: Hub, web_users: dict[str, Login]
) -> None:
    page.goto(live_server.url + "/logga-in")
    assert page.evaluate("document.documentElement.lang") == "sv"
    assert page.title() == "Logga in – Agenthubben"
    _check(page)
    # Nothing filled in: an error summary, and each error tied to its field.
    _press(page, "Fortsätt")
    summary = page.locator(".error-summary")
    assert summary.is_visible()
    assert page.evaluate("document.activeElement.classList.contains('error-summary')")
    login_field = page.get_by_label("Användarnamn", exact=True)
    assert login_field.get_attribute("aria-invalid") == "true"
    described = login_field.get_attribute("aria-describedby")
    assert described and page.locator(f"#{described}").inner_text().endswith(
        "Ange ditt användarnamn."
    )
    _check(page)
    # A wrong password.
    page.get_by_label("Användarnamn", exact=True).fill("alice")
    page.get_by_label("Lösenord", exact=True).fill("not-the-password")
    _press(page, "Fortsätt")
    assert "Inloggningen misslyckades" in page.locator("[role=alert]").inner_text()
    _check(page)
    # The code page, empty and wrong.
    page.get_by_label("Användarnamn", exact=True).fill("alice")
    page.get_by_label("Lösenord", exact=True).fill(LOGINS["alice"].password)
    page.get_by_role("button", name="Fortsätt").click()
    page.wait_for_url("**/logga-in/kod")
    code_field = page.get_by_label("Engångskod", exact=True)
    assert code_field.get_attribute("autocomplete") == "one-time-code"
    assert code_field.get_attribute("inputmode") == "numeric"
    _check(page)
    _press(page, "Logga in", exact=True)
    _check(page)
    page.get_by_label("Engångskod", exact=True).fill("12345x")
    _press(page, "Logga in", exact=True)
    assert "Koden består av sex siffror." in page.inner_text("main")
    _check(page)


def test_a_refused_siths_sign_in_and_the_error_pages_pass_axe(
    page: Any, live_server: LiveServer, hub: Hub, web_users: dict[str, Login]
) -> None:
    page.goto(live_server.url + "/logga-in")
    _press(page, "Logga in med SITHS-kort")
    assert "Inloggningen med SITHS-kort misslyckades" in page.inner_text("main")
    _check(page)
    answer = page.goto(live_server.url + "/finns-inte")
    assert answer is not None and answer.status == 404
    assert page.get_by_role("heading", level=1).inner_text() == "Sidan finns inte"
    _check(page)


def test_a_form_whose_token_was_removed_is_refused(
    page: Any, live_server: LiveServer, hub: Hub, web_users: dict[str, Login]
) -> None:
    page.goto(live_server.url + "/logga-in")
    page.evaluate(
        "document.querySelectorAll('form[action=\"/logga-in\"] [name=csrf_token]')"
        ".forEach(input => input.remove())"
    )
    page.get_by_label("Användarnamn", exact=True).fill("alice")
    page.get_by_label("Lösenord", exact=True).fill(LOGINS["alice"].password)
    with page.expect_response(lambda r: r.url.endswith("/logga-in")) as posted:
        page.get_by_role("button", name="Fortsätt").click()
    assert posted.value.status == 400
    assert page.get_by_role("heading", level=1).inner_text() == "Förfrågan kunde inte hanteras"
    _check(page)


def test_the_keyboard_reaches_everything_in_reading_order(
    page: Any, live_server: LiveServer
) -> None:
    page.goto(live_server.url + "/logga-in")

    def focused() -> str:
        return str(
            page.evaluate(
                "(() => { const e = document.activeElement;"
                " return e.id || e.getAttribute('name') || e.textContent.trim(); })()"
            )
        )

    order = []
    for _ in range(8):
        page.keyboard.press("Tab")
        order.append(focused())
    assert order == [
        "Hoppa till huvudinnehållet",
        "Agenthubben",
        "Logga in med SITHS-kort",
        "login",
        "password",
        "Fortsätt",
        "locale",
        "locale",
    ]
    # The skip link takes the focus past the header.
    page.keyboard.press("Shift+Tab")
    page.goto(live_server.url + "/logga-in")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"


def test_the_workspace_in_english_passes_axe_too(
    page: Any, live_server: LiveServer, hub: Hub, web_users: dict[str, Login]
) -> None:
    page.goto(live_server.url + "/logga-in")
    _press(page, "English")
    assert page.evaluate("document.documentElement.lang") == "en"
    assert page.get_by_role("heading", level=1).inner_text() == "Sign in"
    _check(page)
    page.get_by_label("User name", exact=True).fill("bob")
    page.get_by_label("Password", exact=True).fill(LOGINS["bob"].password)
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url("**/logga-in/kod")
    page.get_by_label("One-time code", exact=True).fill(LOGINS["bob"].code())
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url(live_server.url + "/")
    assert page.get_by_role("heading", level=1).inner_text() == "Welcome, Bob Berg"
    _check(page)


def _fits(page: Any) -> None:
    scroll, client = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert scroll <= client, (scroll, client)


def test_the_pages_reflow_to_a_phone_and_take_twice_the_text_size(
    page: Any, live_server: LiveServer, hub: Hub, web_users: dict[str, Login]
) -> None:
    """WCAG 1.4.10: 320 CSS pixels wide without scrolling sideways; 1.4.4: text at 200 %."""
    page.set_viewport_size({"width": 320, "height": 640})
    page.goto(live_server.url + "/logga-in")
    _fits(page)
    signed_in(page, live_server.url, hub, LOGINS["olof"])
    _fits(page)
    _check(page)
    page.set_viewport_size({"width": 1280, "height": 800})
    page.evaluate("document.documentElement.style.fontSize = '200%'")
    _fits(page)
    page.goto(live_server.url + "/finns-inte")
    page.evaluate("document.documentElement.style.fontSize = '200%'")
    _fits(page)


def test_the_browser_refuses_inline_script_and_the_page_fixture_notices(
    page: Any, hub: Hub
) -> None:
    """The CSP holds in a real browser, and the ``page`` fixture's watch for violations (which
    every test above relies on) does see one."""
    from flask import Blueprint

    from hub.web.app import create_app
    from hub.web.routes import public

    probe = Blueprint("probe", __name__)

    @probe.get("/inline")
    @public
    def inline() -> str:
        return (
            '<!doctype html><html lang="sv"><title>x</title>'
            "<script>document.title = 'ran'</script><p style=\"color: red\">x</p>"
        )

    app = create_app(hub, {"TESTING": True})
    app.register_blueprint(probe)
    server = LiveServer(app)
    try:
        page.goto(server.url + "/inline")
        assert page.title() == "x"  # the inline script did not run
        page.wait_for_timeout(200)
        assert len(page.problems.csp_violations) == 2, page.problems.csp_violations
    finally:
        server.stop()
    page.problems.csp_violations.clear()
