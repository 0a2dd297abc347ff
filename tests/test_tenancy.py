"""The region registry, agreements, region files, keys and crypto-shredding."""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from hub.context import Hub, build_hub
from hub.db.hub_tables import operator_audit
from hub.db.migrate import current_revision, head_revision
from hub.inbound.views import list_messages
from hub.tenancy.access import Forbidden, NotFound, Permission, region_scope, system_actor
from hub.tenancy.keys import KeyDestroyed, KeyStore
from hub.tenancy.registry import (
    MemberRegion,
    RegionError,
    end_agreement,
    get_region,
    list_regions,
    region_from_file,
    save_region,
    sync_regions,
)
from tests.conftest import ALICE, BOB, CHARLIE, OLOF, scope_of
from tests.test_producer import envelope, post, result

REPO = Path(__file__).resolve().parent.parent


def test_shipped_region_files_are_valid() -> None:
    regions = [region_from_file(p) for p in sorted((REPO / "regions").glob("*.toml"))]
    assert [r.lan_code for r in regions] == ["01", "14"]
    assert all(r.is_active(date.today()) for r in regions)


def test_sync_adds_updates_and_never_offboards(hub: Hub, tmp_path: Path) -> None:
    folder = tmp_path / "regions"
    folder.mkdir()
    for source in (REPO / "regions").glob("*.toml"):
        (folder / source.name).write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    assert sync_regions(hub.db, hub.keys, folder, system_actor("test")) == {
        "01": "added",
        "14": "added",
    }
    assert sync_regions(hub.db, hub.keys, folder, system_actor("test")) == {
        "01": "unchanged",
        "14": "unchanged",
    }
    path = folder / "14-vastra-gotalandsregionen.toml"
    path.write_text(path.read_text(encoding="utf-8").replace('"SIT"', '"QA"'), encoding="utf-8")
    (folder / "01-region-stockholm.toml").unlink()
    assert sync_regions(hub.db, hub.keys, folder, system_actor("test")) == {
        "01": "not-in-files",
        "14": "updated",
    }
    with hub.db.hub.connect() as connection:
        region = get_region(connection, "14")
        assert region is not None and region.environment == "QA"
        assert get_region(connection, "01") is not None
        actions = [r.action for r in connection.execute(select(operator_audit))]
    assert actions.count("region.added") == 2 and actions.count("region.updated") == 1
    # Every synced region has a migrated store of its own.
    for lan in ("01", "14"):
        schema = None if hub.db.is_sqlite else f"region_{lan}"
        assert current_revision(hub.db.region(lan), schema) == head_revision("region")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('lan_code = "1"\nhsa_id = "SE2321000016"\nname = "X"\n', "lan_code"),
        ('lan_code = "01"\nhsa_id = "nope"\nname = "X"\n', "hsa_id"),
        ('lan_code = "01"\nname = "X"\n', "missing key hsa_id"),
        ('lan_code = "01"\nhsa_id = "SE2321000016"\nname = "X"\ncolour = 1\n', "unknown keys"),
        (
            'lan_code = "01"\nhsa_id = "SE2321000016"\nname = "X"\nenvironment = "DEV"\n',
            "environment",
        ),
        (
            'lan_code = "01"\nhsa_id = "SE2321000016"\nname = "X"\n[agreement]\nsigned = "soon"\n',
            "agreement.signed",
        ),
        ("lan_code = ", "broken.toml"),
    ],
)
def test_a_bad_region_file_changes_nothing(
    hub: Hub, tmp_path: Path, content: str, expected: str
) -> None:
    folder = tmp_path / "regions"
    folder.mkdir()
    (folder / "00-good.toml").write_text(
        'lan_code = "03"\nhsa_id = "SE2321000024"\nname = "Region Uppsala"\n', encoding="utf-8"
    )
    (folder / "broken.toml").write_text(content, encoding="utf-8")
    with pytest.raises(RegionError, match=expected):
        sync_regions(hub.db, hub.keys, folder, system_actor("test"))
    with hub.db.hub.connect() as connection:
        assert list_regions(connection) == []


def test_add_refuses_a_duplicate_lan_code(
    hub: Hub, add_region: Callable[..., MemberRegion]
) -> None:
    region = add_region("14", "SE2321000131", "Västra Götalandsregionen")
    with pytest.raises(RegionError, match="already exists"):
        save_region(hub.db, hub.keys, region, system_actor("test"), create=True)


def test_agreement_states() -> None:
    today = date(2026, 6, 1)
    base = MemberRegion("14", "SE2321000131", "VGR")
    signed = MemberRegion(
        "14",
        "SE2321000131",
        "VGR",
        agreement_signed=today,
        platform_confirmed=today,
        active_from=today,
    )
    assert base.agreement_state(today) == "pending" and not base.is_active(today)
    assert signed.agreement_state(today) == "active" and signed.is_active(today)
    assert signed.agreement_state(today - timedelta(days=1)) == "not-started"
    ended = MemberRegion(**{**signed.__dict__, "active_to": today})
    assert ended.is_active(today) and not ended.is_active(today + timedelta(days=1))
    assert ended.agreement_state(today + timedelta(days=1)) == "ended"


def test_keys_differ_per_region_and_hash_is_keyed(
    hub: Hub, regions_ab: tuple[MemberRegion, MemberRegion], make_pnr: Callable[[], str]
) -> None:
    pnr = make_pnr()
    with hub.db.hub.connect() as connection:
        a, b = hub.keys.cipher(connection, "14"), hub.keys.cipher(connection, "01")
    assert a.keyed_hash(pnr) != b.keyed_hash(pnr)
    assert a.keyed_hash(pnr) == a.keyed_hash(pnr)
    sealed = a.seal(pnr.encode(), "pnr")
    assert a.open(sealed, "pnr") == pnr.encode()
    with pytest.raises(Exception):  # noqa: B017 - InvalidTag: purpose is bound in
        a.open(sealed, "body")


def test_deflated_seals_of_earlier_versions_open_and_stay_bound_to_their_region(
    hub: Hub, regions_ab: tuple[MemberRegion, MemberRegion], make_pnr: Callable[[], str]
) -> None:
    body = envelope("14", make_pnr())
    with hub.db.hub.connect() as connection:
        a, b = hub.keys.cipher(connection, "14"), hub.keys.cipher(connection, "01")
    # Earlier versions deflated bodies and fields before sealing (version byte 2), first with
    # zlib's default 32 kB window, later with a 4 kB one; such rows must stay readable.
    earlier = []
    for wbits in (15, 12):
        nonce = os.urandom(12)
        deflated = zlib.compress(body, 1, wbits)
        earlier.append(b"\x02" + nonce + a._aead.encrypt(nonce, deflated, b"14:body"))
    plain = a.seal(body, "body")
    assert plain[:1] == b"\x01" and len(plain) > len(body)
    for sealed in (*earlier, plain):
        assert a.open(sealed, "body") == body
        with pytest.raises(Exception):  # noqa: B017 - InvalidTag
            b.open(sealed, "body")


def test_ending_an_agreement_with_key_destruction_makes_data_unreadable(
    hub: Hub,
    client: Any,
    regions_ab: tuple[MemberRegion, MemberRegion],
    make_pnr: Callable[[], str],
    settings: Any,
) -> None:
    assert result(post(client, envelope("14", make_pnr()))[1])[0] == "OK"
    assert len(list_messages(scope_of(hub, "14", "test"))) == 1
    end_agreement(
        hub.db, hub.keys, "14", system_actor("test"), destroy_key=True, today=date.today()
    )
    # A fresh key store (another node, or after restart) cannot read region 14 any more.
    fresh = KeyStore(_master(settings))
    with hub.db.hub.connect() as connection, pytest.raises(KeyDestroyed):
        fresh.cipher(connection, "14")
    with pytest.raises(KeyDestroyed):
        list_messages(scope_of(hub, "14", "test"))
    # Region B is untouched.
    with hub.db.hub.connect() as connection:
        fresh.cipher(connection, "01")
    # The ended region's agreement is over, today and tomorrow (refused at once: see below).
    hub.router.invalidate()
    with hub.db.hub.connect() as connection:
        region = get_region(connection, "14")
    assert region is not None and not region.is_active(date.today() + timedelta(days=1))


def _master(settings: Any) -> bytes:
    import base64

    return base64.b64decode((settings.data_dir / "master.key").read_text().strip())


# -- the one home of authorisation: actors, roles and region scopes ---------------------------


def test_personas_get_exactly_the_scopes_their_roles_allow(
    hub: Hub, regions_ab: tuple[MemberRegion, MemberRegion]
) -> None:
    assert region_scope(hub, ALICE, "14", Permission.DECIDE).lan == "14"
    assert region_scope(hub, BOB, "14", Permission.READ_CONTENT).lan == "14"
    with pytest.raises(Forbidden):
        region_scope(hub, BOB, "14", Permission.DECIDE)
    # Charlie holds no role in 14: region 14 does not exist for her, whatever she asks.
    for permission in Permission:
        with pytest.raises(NotFound):
            region_scope(hub, CHARLIE, "14", permission)
    assert region_scope(hub, CHARLIE, "01", Permission.DECIDE).lan == "01"
    # Olof sees every region's metadata and none of its content.
    for lan in ("14", "01"):
        assert region_scope(hub, OLOF, lan, Permission.READ_METADATA).lan == lan
        assert region_scope(hub, OLOF, lan, Permission.OPERATE).lan == lan
        for refused in (Permission.READ_CONTENT, Permission.DECIDE, Permission.SUBMIT):
            with pytest.raises(Forbidden):
                region_scope(hub, OLOF, lan, refused)


def test_a_region_that_is_not_registered_has_no_scope_even_for_the_system(hub: Hub) -> None:
    with pytest.raises(NotFound):
        region_scope(hub, system_actor("test"), "14", Permission.READ_METADATA)


def test_charlie_sees_nothing_of_region_14_through_the_services(
    hub: Hub,
    client: Any,
    regions_ab: tuple[MemberRegion, MemberRegion],
    make_pnr: Callable[[], str],
) -> None:
    assert result(post(client, envelope("14", make_pnr()))[1])[0] == "OK"
    [message] = list_messages(region_scope(hub, ALICE, "14", Permission.READ_METADATA))
    assert message.masked_pnr.endswith("-****")
    assert list_messages(region_scope(hub, CHARLIE, "01", Permission.READ_METADATA)) == []
    with pytest.raises(NotFound):
        region_scope(hub, CHARLIE, "14", Permission.READ_METADATA)


# -- ending a region ends it, everywhere and at once (issue 17) --------------------------------


def _cli_env(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {
        "AGENTHUB_ENV": "test",
        "AGENTHUB_DATA_DIR": str(settings.data_dir),
        "AGENTHUB_DATABASE_URL": settings.database_url,
    }.items():
        monkeypatch.setenv(key, value)


def _stored(hub: Hub, lan: str) -> int:
    from hub.db.region_tables import messages

    with hub.db.region(lan).connect() as connection:
        return len(connection.execute(select(messages.c.id)).all())


@pytest.mark.parametrize("destroy_key", [True, False], ids=["destroy-key", "keep-key"])
def test_an_ended_region_is_refused_at_once_by_every_other_process(
    hub: Hub,
    client: Any,
    settings: Any,
    regions_ab: tuple[MemberRegion, MemberRegion],
    make_pnr: Callable[[], str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    destroy_key: bool,
) -> None:
    from hub.cli import main
    from hub.web.app import create_app

    # A second serving process on the same database, with its own caches (router, keys).
    other = build_hub(settings)
    other_client = create_app(other, {"TESTING": True}).test_client()
    try:
        for serving in (client, other_client):
            assert result(post(serving, envelope("14", make_pnr()))[1])[0] == "OK"
        assert _stored(hub, "14") == 2
        # A third one, the operator's shell, ends the region.
        _cli_env(settings, monkeypatch)
        command = ["region", "end", "--lan", "14"] + (["--destroy-key"] if destroy_key else [])
        assert main(command) == 0
        # Both serving processes refuse the very next call, with an ERROR (not a fault, which the
        # platform would resend all day), and store nothing anywhere.
        for serving in (other_client, client):
            status, answer = post(serving, envelope("14", make_pnr()))
            code, text = result(answer)
            assert (status, code) == (200, "ERROR")
            assert text is not None and "agreement has ended" in text
        assert _stored(hub, "14") == 2
        # Region 01 is served as before.
        assert result(post(other_client, envelope("01", make_pnr()))[1])[0] == "OK"
        # After a restart too: ERROR, never a Server fault.
        restarted = build_hub(settings)
        try:
            restarted_client = create_app(restarted, {"TESTING": True}).test_client()
            status, answer = post(restarted_client, envelope("14", make_pnr()))
            assert (status, result(answer)[0]) == (200, "ERROR")
        finally:
            restarted.close()
        assert _stored(hub, "14") == 2
    finally:
        other.close()


def test_a_call_in_a_batch_written_after_the_end_is_refused_even_with_a_warm_router(
    hub: Hub, regions_ab: tuple[MemberRegion, MemberRegion], make_pnr: Callable[[], str]
) -> None:
    from hub.tenancy.routing import Route

    other = build_hub(hub.settings)
    try:
        serving = client_of(other)
        assert result(post(serving, envelope("14", make_pnr()))[1])[0] == "OK"
        end_agreement(
            hub.db, hub.keys, "14", system_actor("test"), destroy_key=False, today=date.today()
        )
        # Even a router that still (wrongly) routes to 14 gets nothing stored: the group
        # commit checks the registry in the same transaction as the insert.
        region = get_region_of(hub, "14")
        other.router.route = lambda *_args: Route(region)  # type: ignore[method-assign]
        status, answer = post(serving, envelope("14", make_pnr()))
        assert (status, result(answer)[0]) == (200, "ERROR")
        assert _stored(hub, "14") == 1
    finally:
        other.close()


def test_a_sync_never_revives_an_ended_region_and_says_why(
    hub: Hub,
    settings: Any,
    tmp_path: Path,
    make_pnr: Callable[[], str],
    client: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from hub.cli import main
    from hub.db.hub_tables import region_keys

    folder = tmp_path / "regions"
    folder.mkdir()
    for source in (REPO / "regions").glob("*.toml"):
        (folder / source.name).write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    sync_regions(hub.db, hub.keys, folder, system_actor("test"))
    hub.router.invalidate()
    assert result(post(client, envelope("14", make_pnr()))[1])[0] == "OK"
    assert result(post(client, envelope("01", make_pnr()))[1])[0] == "OK"
    end_agreement(
        hub.db, hub.keys, "14", system_actor("test"), destroy_key=True, today=date.today()
    )
    _cli_env(settings, monkeypatch)
    capsys.readouterr()
    # The sync fails as a whole, loudly, naming the file, the region and the way back.
    assert main(["regions", "sync", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "14-vastra-gotalandsregionen.toml" in err and "was ended" in err
    assert "agenthub region reinstate --lan 14" in err and "Traceback" not in err
    with pytest.raises(RegionError, match="never revives an ended region"):
        sync_regions(hub.db, hub.keys, folder, system_actor("test"))
    with hub.db.hub.connect() as connection:
        region = get_region(connection, "14")
        wrapped = connection.execute(
            select(region_keys.c.wrapped_key).where(region_keys.c.lan_code == "14")
        ).scalar()
    assert region is not None and region.ended_at is not None and wrapped is None
    assert not region.is_active(date.today())
    # Not even save_region or a new key by the back door.
    with pytest.raises(RegionError, match="reinstate"):
        from_file = region_from_file(next(folder.glob("14-*")))
        save_region(hub.db, hub.keys, from_file, system_actor("test"), create=False)
    with hub.db.hub.begin() as connection, pytest.raises(KeyDestroyed):
        hub.keys.create(connection, "14")
    hub.router.invalidate()
    assert result(post(client, envelope("14", make_pnr()))[1])[0] == "ERROR"
    # Listing the ended region says why, in one line; the other region lists as before.
    assert main(["messages", "--lan", "14"]) == 2
    err = capsys.readouterr().err
    assert "key was destroyed" in err and "Traceback" not in err
    assert main(["messages", "--lan", "01"]) == 0
    capsys.readouterr()
    assert main(["region", "list"]) == 0
    [line] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("14 ")]
    assert line.split()[3] == "ended"


def test_a_reinstated_region_gets_a_new_key_and_reports_old_rows_as_unreadable(
    hub: Hub,
    settings: Any,
    client: Any,
    regions_ab: tuple[MemberRegion, MemberRegion],
    make_pnr: Callable[[], str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from hub.cli import main
    from hub.db.region_tables import messages
    from hub.delivery.run import deliver_region
    from hub.inbound.views import read_body
    from hub.jobs.config import JobSettings
    from hub.tenancy.keys import UNREADABLE, Unreadable
    from hub.tenancy.registry import reinstate_region

    # A second serving process that has region 14's old key in its cache.
    other = build_hub(settings)
    try:
        serving = client_of(other)
        assert result(post(serving, envelope("14", make_pnr()))[1])[0] == "OK"
        [old] = list_messages(scope_of(hub, "14"))
        end_agreement(
            hub.db, hub.keys, "14", system_actor("test"), destroy_key=True, today=date.today()
        )
        assert reinstate_region(hub.db, hub.keys, "14", system_actor("test")) is True
        with pytest.raises(RegionError, match="not ended"):
            reinstate_region(hub.db, hub.keys, "14", system_actor("test"))
        # The stale key is never sealed with: the call is stored under the new one.
        assert result(post(serving, envelope("14", make_pnr()))[1])[0] == "OK"
    finally:
        other.close()
    hub.router.invalidate()
    assert result(post(client, envelope("14", make_pnr()))[1])[0] == "OK"
    rows = {m.id: m for m in list_messages(scope_of(hub, "14"))}
    assert len(rows) == 3
    assert rows[old.id].masked_pnr == UNREADABLE
    assert all(m.masked_pnr.endswith("-****") for i, m in rows.items() if i != old.id)
    scope = scope_of(hub, "14", permission=Permission.READ_CONTENT)
    with pytest.raises(Unreadable, match="destroyed or replaced"):
        read_body(scope, old.id)
    for message_id in set(rows) - {old.id}:
        assert read_body(scope, message_id)
    # Delivery: the unreadable message fails at once, saying why; the others are delivered.
    region = get_region_of(hub, "14")
    report = deliver_region(hub, region, JobSettings(), "w1")
    assert (report.written, report.failed) == (2, 1)
    with hub.db.region("14").connect() as connection:
        state, error = connection.execute(
            select(messages.c.delivery_state, messages.c.delivery_error).where(
                messages.c.id == old.id
            )
        ).one()
    assert state == "failed" and "destroyed or replaced" in error
    # The command line lists it as such.
    _cli_env(settings, monkeypatch)
    capsys.readouterr()
    assert main(["messages", "--lan", "14"]) == 0
    out = capsys.readouterr().out
    assert UNREADABLE in out and out.count("-****") == 2


def client_of(hub: Hub) -> Any:
    """A Flask test client of another hub object (another serving process)."""
    from hub.web.app import create_app

    return create_app(hub, {"TESTING": True}).test_client()


def get_region_of(hub: Hub, lan: str) -> MemberRegion:
    with hub.db.hub.connect() as connection:
        region = get_region(connection, lan)
    assert region is not None
    return region
