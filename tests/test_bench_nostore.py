"""The inbound benchmark's no-store hub: the contract work runs, nothing is stored."""

from __future__ import annotations

from collections.abc import Callable

from bench.hub_nostore import build_app
from hub.context import Hub
from hub.tenancy.registry import MemberRegion
from tests.test_producer import count, envelope, post, result


def test_no_store_hub_validates_and_answers_but_stores_nothing(
    hub: Hub, regions_ab: tuple[MemberRegion, MemberRegion], make_pnr: Callable[[], str]
) -> None:
    client = build_app(hub).test_client()

    status, answer = post(client, envelope("14", make_pnr()))
    assert (status, result(answer)) == (200, ("OK", None))
    assert count(hub, "14") == 0

    # The contract work still runs: a län code that is not a member is refused as by the hub.
    status, answer = post(client, envelope("03", make_pnr()))
    code, text = result(answer)
    assert (status, code) == (200, "ERROR")
    assert text and "03" in text
