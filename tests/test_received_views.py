"""What a region's people read of received messages and of the access log, and what that logs."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from typing import Any

import pytest
from lxml import etree
from sqlalchemy import select, update

from hub.audit.views import list_access_log
from hub.context import Hub
from hub.db.region_tables import access_log, messages
from hub.inbound.views import download_received, list_messages, open_received
from hub.tenancy.access import Forbidden, NotFound, Permission, region_scope
from hub.tenancy.registry import MemberRegion
from tests.conftest import ALICE, BOB, CHARLIE, OLOF
from tests.test_producer import envelope, post, result


@pytest.fixture
def received(
    hub: Hub,
    client: Any,
    regions_ab: tuple[MemberRegion, MemberRegion],
    make_pnr: Callable[[], str],
) -> tuple[str, str]:
    """One message received for region 14: (its id, the woman's personnummer)."""
    pnr = make_pnr()
    assert result(post(client, envelope("14", pnr))[1])[0] == "OK"
    with hub.db.region("14").connect() as connection:
        message_id = connection.execute(select(messages.c.id)).scalar_one()
    return message_id, pnr


def _log(hub: Hub) -> list[Any]:
    with hub.db.region("14").connect() as connection:
        return list(connection.execute(select(access_log).order_by(access_log.c.id)))


def test_a_viewer_opens_a_message_and_the_view_names_her_in_the_log(
    hub: Hub, received: tuple[str, str]
) -> None:
    message_id, pnr = received
    scope = region_scope(hub, BOB, "14", Permission.READ_CONTENT)
    before = len(_log(hub))
    message = open_received(scope, message_id)
    assert message.personnummer == pnr and message.information is not None
    assert message.information["subjectOfCare"]["personId"]["extension"] == pnr
    entries = _log(hub)[before:]
    assert len(entries) == 1
    [entry] = entries
    assert (entry.action, entry.message_id, entry.outcome) == ("received.viewed", message_id, "ok")
    assert (entry.actor, entry.actor_name, entry.hsa_id) == (BOB.label, BOB.name, BOB.hsa_id)
    assert entry.masked_pnr == f"{pnr[:8]}-****"
    assert entry.pnr_hash == scope.cipher.keyed_hash(pnr)
    assert pnr not in (entry.detail or "") and pnr not in (entry.resource or "")


@pytest.mark.parametrize("fmt", ["xml", "json", "csv"])
def test_a_message_downloads_as_the_drop_got_it_or_as_one_csv_row(
    hub: Hub, received: tuple[str, str], fmt: str
) -> None:
    message_id, pnr = received
    scope = region_scope(hub, ALICE, "14", Permission.READ_CONTENT)
    download = download_received(scope, message_id, fmt)  # type: ignore[arg-type]
    assert message_id in download.name and download.name.endswith(f".{fmt}")
    if fmt == "xml":
        root = etree.fromstring(download.data)
        assert root.tag.endswith("}cervixScreeningInformation") and pnr.encode() in download.data
    elif fmt == "json":
        assert json.loads(download.data)["personnummer"] == pnr
    else:
        [row] = list(csv.DictReader(io.StringIO(download.data.decode("utf-8")), delimiter=";"))
        assert row["subjectOfCare.personId.extension"] == pnr and row["messageId"] == message_id
    assert _log(hub)[-1].action == "received.downloaded"


def test_lists_are_masked_and_logged_once_and_the_operator_sees_no_content(
    hub: Hub, received: tuple[str, str]
) -> None:
    message_id, pnr = received
    [view] = list_messages(region_scope(hub, OLOF, "14", Permission.READ_METADATA))
    assert view.id == message_id and view.masked_pnr == f"{pnr[:8]}-****"
    assert _log(hub)[-1].action == "messages.listed"
    with pytest.raises(Forbidden):
        region_scope(hub, OLOF, "14", Permission.READ_CONTENT)


def test_charlie_of_region_01_finds_nothing_of_region_14(
    hub: Hub, received: tuple[str, str]
) -> None:
    message_id, _ = received
    with pytest.raises(NotFound):
        region_scope(hub, CHARLIE, "14", Permission.READ_METADATA)
    ours = region_scope(hub, CHARLIE, "01", Permission.READ_CONTENT)
    with pytest.raises(NotFound):
        open_received(ours, message_id)
    with pytest.raises(NotFound):
        download_received(ours, message_id, "xml")
    assert list_messages(ours) == []


def test_a_purged_message_shows_its_metadata_only(hub: Hub, received: tuple[str, str]) -> None:
    message_id, _ = received
    with hub.db.region("14").begin() as connection:
        connection.execute(update(messages).values(body_enc=None, fields_enc=None))
    scope = region_scope(hub, ALICE, "14", Permission.READ_CONTENT)
    message = open_received(scope, message_id)
    assert (message.personnummer, message.information, message.files) == (None, None, None)
    with pytest.raises(ValueError, match="retention"):
        download_received(scope, message_id, "json")


def test_the_access_log_says_who_looked_at_one_woman_and_reading_it_is_logged_too(
    hub: Hub, received: tuple[str, str], make_pnr: Callable[[], str]
) -> None:
    message_id, pnr = received
    open_received(region_scope(hub, BOB, "14", Permission.READ_CONTENT), message_id)
    scope = region_scope(hub, ALICE, "14", Permission.READ_ACCESS_LOG)
    entries = list_access_log(scope, personnummer=pnr)
    assert [(e.action, e.actor) for e in entries] == [("received.viewed", BOB.label)]
    assert list_access_log(scope, personnummer=make_pnr()) == []
    with pytest.raises(ValueError):
        list_access_log(scope, personnummer="19850101")
    newest = list_access_log(scope, limit=1)
    assert newest[0].action == "access_log.viewed"  # the reading before this one
    assert len(list_access_log(scope, before_id=newest[0].id, limit=1000)) >= 2
