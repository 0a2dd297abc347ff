"""The workspace's languages: every text has its Swedish translation, the catalogues match the
code, the compiled catalogues match their sources, and a user can switch to English."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from babel.messages.frontend import CommandLineInterface
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from tests.web import form_token

TRANSLATIONS = Path(__file__).resolve().parent.parent / "hub" / "web" / "translations"
REPO = TRANSLATIONS.parent.parent.parent


def _catalogue(locale: str) -> Any:
    with open(TRANSLATIONS / locale / "LC_MESSAGES" / "messages.po", "rb") as source:
        return read_po(source, locale=locale)


def _ids(catalogue: Any) -> set[str]:
    return {message.id for message in catalogue if message.id}


@pytest.fixture(scope="module")
def extracted(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every text marked for translation in hub/ and the templates, extracted now."""
    out = tmp_path_factory.mktemp("i18n") / "messages.pot"
    CommandLineInterface().run(
        [
            "pybabel",
            "--quiet",
            "extract",
            "-F",
            str(TRANSLATIONS / "babel.cfg"),
            "-k",
            "_l",
            "-o",
            str(out),
            str(REPO),
        ]
    )
    with open(out, "rb") as source:
        return _ids(read_po(source))


def test_every_text_of_the_code_is_in_both_catalogues(extracted: set[str]) -> None:
    assert len(extracted) > 40
    for locale in ("sv", "en"):
        ids = _ids(_catalogue(locale))
        assert not extracted - ids, f"run scripts/i18n: new in the code: {extracted - ids}"
        assert not ids - extracted, f"run scripts/i18n: gone from the code: {ids - extracted}"


def test_every_text_has_a_swedish_translation_with_the_same_placeholders() -> None:
    catalogue = _catalogue("sv")
    untranslated = [m.id for m in catalogue if m.id and (not m.string or m.fuzzy)]
    assert not untranslated, untranslated
    problems = [(message.id, errors) for message, errors in catalogue.check()]
    assert not problems, problems


@pytest.mark.parametrize("locale", ["sv", "en"])
def test_the_compiled_catalogue_is_its_source_compiled(locale: str) -> None:
    """The wheel carries the .mo files: they must say what the .po files say."""
    source = {m.id: m.string for m in _catalogue(locale) if m.id and m.string and not m.fuzzy}
    with open(TRANSLATIONS / locale / "LC_MESSAGES" / "messages.mo", "rb") as compiled:
        built = {m.id: m.string for m in read_mo(compiled) if m.id}
    assert built == source, "run scripts/i18n to compile the catalogues"


def test_swedish_by_default_and_english_on_request(client: Any) -> None:
    page = client.get("/logga-in")
    assert '<html lang="sv">' in page.text and "Logga in" in page.text
    answer = client.post(
        "/sprak", data={"csrf_token": form_token(page.text), "locale": "en", "next": "/logga-in"}
    )
    assert answer.status_code == 302 and answer.headers["Location"] == "/logga-in"
    english = client.get("/logga-in")
    assert '<html lang="en">' in english.text and "Sign in" in english.text
    assert "Logga in" not in english.text
    assert "After 5 failed attempts in a row the account is locked for 15 minutes." in english.text
    # A language the workspace does not speak changes nothing; neither does an off-site next.
    odd = client.post(
        "/sprak",
        data={"csrf_token": form_token(english.text), "locale": "xx", "next": "//evil.example"},
    )
    assert odd.headers["Location"] == "/"
    assert '<html lang="en">' in client.get("/logga-in").text
