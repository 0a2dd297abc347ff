"""The web chassis: every endpoint classified and the class enforced, a request id and the
security headers on every answer, error pages in Swedish (another region's ids answer 404)."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from flask import Blueprint, Flask, jsonify
from sqlalchemy import select
from werkzeug.routing import IntegerConverter, UUIDConverter

from hub.audit import Action, record_access
from hub.audit.log import request_id
from hub.context import Hub
from hub.db.region_tables import access_log
from hub.tenancy.access import Permission
from hub.web import security
from hub.web.app import create_app
from hub.web.routes import Access, access_of, authenticated, personal_data, public
from hub.web.users import current_actor, scope_for
from tests.web import LOGINS, Login, sign_in


def _endpoints(app: Flask) -> dict[str, Access | None]:
    return {rule.endpoint: access_of(app, rule.endpoint) for rule in app.url_map.iter_rules()}


def test_every_endpoint_of_the_app_is_classified(app: Flask) -> None:
    """The walk later blueprints are held to: an endpoint without a class fails here."""
    classes = _endpoints(app)
    assert classes, "the URL map is empty"
    unclassified = sorted(endpoint for endpoint, access in classes.items() if access is None)
    assert not unclassified, f"classify these (hub.web.routes): {unclassified}"
    # The chassis's own endpoints, each with the class it must have.
    assert {name: classes[name] for name in classes if name.split(".")[0] in CHASSIS} == {
        "static": Access.PUBLIC,
        "health.healthz": Access.PUBLIC,
        "health.service": Access.PUBLIC,
        "auth.sign_in": Access.PUBLIC,
        "auth.code": Access.PUBLIC,
        "auth.siths": Access.PUBLIC,
        "auth.sign_out": Access.PUBLIC,
        "home.index": Access.AUTHENTICATED,
        "home.language": Access.PUBLIC,
    }


CHASSIS = ("static", "health", "auth", "home")


def test_a_class_may_be_given_to_a_method_view_class(hub: Hub) -> None:
    from flask.views import MethodView

    @personal_data
    class Records(MethodView):
        def get(self) -> str:
            return "records"

    app = create_app(hub, {"TESTING": True})
    app.add_url_rule("/records", view_func=Records.as_view("records"))
    assert access_of(app, "records") is Access.PERSONAL_DATA


def test_an_unclassified_endpoint_is_refused_when_called(hub: Hub) -> None:
    app = create_app(hub)

    @app.get("/forgotten")
    def forgotten() -> str:
        return "what nobody classified"

    assert access_of(app, "forgotten") is None
    answer = app.test_client().get("/forgotten")
    assert answer.status_code == 500 and "what nobody classified" not in answer.text


def _sample(converter: Any) -> Any:
    if isinstance(converter, IntegerConverter):
        return 1
    if isinstance(converter, UUIDConverter):
        return uuid.uuid4()
    return "14"


def test_no_endpoint_but_a_public_one_answers_the_signed_out(
    app: Flask, web_users: dict[str, Login]
) -> None:
    """Every endpoint of the map, every method: the signed-out never reach a non-public view
    (pages send them to sign in, the API answers 401; a POST without a token stops at CSRF)."""
    client = app.test_client()
    adapter = app.url_map.bind("localhost")
    checked = 0
    for rule in app.url_map.iter_rules():
        if access_of(app, rule.endpoint) is Access.PUBLIC:
            continue
        values = {name: _sample(conv) for name, conv in rule._converters.items()}
        path = adapter.build(rule.endpoint, values)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            answer = client.open(path, method=method)
            api = path.startswith("/api/")
            allowed = {401} if api else {302, 400}
            assert answer.status_code in allowed, (rule.endpoint, method, answer.status_code)
            if answer.status_code == 302:
                assert answer.headers["Location"].startswith("/logga-in?next=")
            checked += 1
    assert checked >= 1


def test_every_answer_has_the_security_headers_and_its_own_request_id(
    client: Any, hub: Hub, web_users: dict[str, Login]
) -> None:
    sign_in(client, hub, LOGINS["alice"])
    seen = set()
    for path in ("/", "/logga-in", "/healthz", "/service", "/static/hub.css", "/nowhere"):
        answer = client.get(path)
        answer.close()  # a static file is a stream
        headers = answer.headers
        csp = headers["Content-Security-Policy"]
        assert csp == security.CSP, path
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "same-origin"
        assert headers["X-Frame-Options"] == "DENY"
        assert re.fullmatch(r"[0-9a-f]{32}", headers["X-Request-Id"]), path
        seen.add(headers["X-Request-Id"])
        if path.startswith("/static/"):
            assert "no-store" not in headers.get("Cache-Control", "")
        else:
            assert headers["Cache-Control"] == "no-store", path
    assert len(seen) == 6


def test_the_pages_hold_no_inline_script_or_style(
    client: Any, hub: Hub, web_users: dict[str, Login]
) -> None:
    """What the CSP would block in a browser (tests/test_web_browser.py checks it there)."""
    pages = [client.get("/logga-in").text, client.get("/nowhere").text]
    sign_in(client, hub, LOGINS["olof"])
    pages.append(client.get("/").text)
    for html in pages:
        assert "<script" not in html and "<style" not in html
        assert not re.search(r"\sstyle=", html) and not re.search(r"\son[a-z]+=", html)


def _probe_app(hub: Hub) -> Flask:
    """The app with probes: the request id as a view sees it, a region view, a failing view."""
    probe = Blueprint("probe", __name__)

    @probe.get("/probe/request-id")
    @public
    def rid() -> Any:
        return jsonify(request_id=request_id.get())

    @probe.get("/probe/<lan>/<permission>")
    @authenticated
    def region(lan: str, permission: str) -> Any:
        scope = scope_for(lan, Permission(permission))
        with scope.engine.begin() as connection:
            record_access(connection, current_actor(), Action.RECORDS_LISTED, resource="probe")
        return jsonify(region=scope.region.name)

    @probe.get("/probe/fails")
    @public
    def fails() -> Any:
        raise RuntimeError("a bug")

    app = create_app(hub)
    app.register_blueprint(probe)
    return app


def test_the_request_id_is_the_requests_while_it_is_served_and_no_longer(hub: Hub) -> None:
    client = _probe_app(hub).test_client()
    answer = client.get("/probe/request-id", headers={"X-Request-Id": "chosen-by-a-client"})
    assert answer.json["request_id"] == answer.headers["X-Request-Id"] != "chosen-by-a-client"
    assert request_id.get() is None


def test_an_access_log_entry_names_the_request_that_wrote_it(
    hub: Hub, web_users: dict[str, Login]
) -> None:
    client = _probe_app(hub).test_client()
    sign_in(client, hub, LOGINS["alice"])
    answer = client.get("/probe/14/read_content")
    assert answer.status_code == 200
    with hub.db.region("14").connect() as connection:
        entry = connection.execute(select(access_log).where(access_log.c.resource == "probe")).one()
    assert entry.request_id == answer.headers["X-Request-Id"]
    assert (entry.actor, entry.actor_name, entry.hsa_id) == (
        "user:alice",
        "Alice Andersson",
        "SE2321000131-A1",
    )
    assert entry.user_id is not None


@pytest.mark.parametrize(
    ("login", "lan", "permission", "status"),
    [
        ("alice", "14", "decide", 200),
        ("bob", "14", "read_content", 200),
        ("bob", "14", "decide", 403),
        ("charlie", "14", "read_metadata", 404),  # another region's: as if it did not exist
        ("charlie", "99", "read_metadata", 404),  # a region that does not exist
        ("charlie", "01", "decide", 200),
        ("olof", "14", "read_metadata", 200),
        ("olof", "14", "read_content", 403),  # the operator never sees a woman's content
    ],
)
def test_regions_are_reached_only_through_the_users_roles(
    hub: Hub, web_users: dict[str, Login], login: str, lan: str, permission: str, status: int
) -> None:
    client = _probe_app(hub).test_client()
    sign_in(client, hub, LOGINS[login])
    answer = client.get(f"/probe/{lan}/{permission}")
    assert answer.status_code == status
    if status == 404:
        assert "Sidan finns inte" in answer.text
        assert "Region" not in answer.text.split("<main")[1].split("</main>")[0]
    if status == 403:
        assert "Din roll ger inte behörighet till detta" in answer.text


def test_another_regions_id_and_a_missing_one_answer_the_same(
    hub: Hub, web_users: dict[str, Login]
) -> None:
    client = _probe_app(hub).test_client()
    sign_in(client, hub, LOGINS["charlie"])
    other, missing = client.get("/probe/14/read_metadata"), client.get("/probe/99/read_metadata")
    # Apart from the request id and the page's own address (in the language switch): the same.
    strip = re.compile(r"[0-9a-f]{32}|/probe/(14|99)/")
    assert other.status_code == missing.status_code == 404
    assert strip.sub("", other.text) == strip.sub("", missing.text)


def test_error_pages_speak_swedish_and_give_the_request_id(hub: Hub) -> None:
    client = _probe_app(hub).test_client()
    missing = client.get("/nowhere")
    assert missing.status_code == 404 and '<html lang="sv">' in missing.text
    assert "Sidan finns inte" in missing.text
    assert missing.headers["X-Request-Id"] in missing.text
    wrong_method = client.get("/logga-ut")
    assert wrong_method.status_code == 405 and "POST" in wrong_method.headers["Allow"]
    assert "Sidan kan inte användas på det här sättet" in wrong_method.text
    broken = client.get("/probe/fails")
    assert broken.status_code == 500 and "Något gick fel" in broken.text
    assert "a bug" not in broken.text and "Traceback" not in broken.text


def test_the_api_answers_errors_as_problem_details(hub: Hub) -> None:
    answer = _probe_app(hub).test_client().get("/api/v1/nothing-here")
    assert answer.status_code == 404 and answer.mimetype == "application/problem+json"
    assert answer.json == {"type": "about:blank", "title": "Not Found", "status": 404}


def test_the_service_description_moved_from_the_root_to_service(client: Any) -> None:
    answer = client.get("/service")
    assert answer.json["service"] == "agenthub" and answer.json["wsdl"].endswith("?wsdl")
    assert client.get("/").status_code == 302  # the workspace: sign in first


def test_data_that_can_no_longer_be_opened_answers_410_and_a_missing_store_503(
    hub: Hub, web_users: dict[str, Login], client: Any, make_pnr: Any
) -> None:
    from datetime import date

    from hub.inbound.views import list_messages
    from hub.tenancy.access import system_actor
    from hub.tenancy.registry import end_agreement
    from tests.test_producer import envelope, post, result

    probe = Blueprint("sealed", __name__)

    @probe.get("/sealed/<lan>")
    @authenticated
    def messages(lan: str) -> Any:
        return jsonify(count=len(list_messages(scope_for(lan, Permission.READ_METADATA))))

    app = create_app(hub)
    app.register_blueprint(probe)
    browser = app.test_client()
    sign_in(browser, hub, LOGINS["olof"])
    assert result(post(client, envelope("14", make_pnr()))[1])[0] == "OK"
    assert browser.get("/sealed/14").json == {"count": 1}
    end_agreement(
        hub.db, hub.keys, "14", system_actor("test"), destroy_key=True, today=date.today()
    )
    gone = browser.get("/sealed/14")
    assert gone.status_code == 410 and "Går inte längre att läsa" in gone.text
    assert "Traceback" not in gone.text and gone.headers["X-Request-Id"] in gone.text
    if hub.db.is_sqlite:
        hub.db.region_db_path("01").unlink()
        missing = browser.get("/sealed/01")
        assert missing.status_code == 503 and "Regionens lagring saknas" in missing.text
        assert "region_01.db" not in missing.text  # the page names no path; the log does
