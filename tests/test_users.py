"""Accounts, passwords, second factors and API tokens (hub/users), and their commands."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.exceptions import InvalidTag
from sqlalchemy import select, update

from hub.cli import cli
from hub.context import Hub
from hub.db.hub_tables import api_tokens, operator_audit, user_roles, users
from hub.tenancy.access import Role, system_actor
from hub.tenancy.registry import MemberRegion
from hub.users import passwords, totp
from hub.users.accounts import (
    UserError,
    add_user,
    change_roles,
    get_user,
    list_users,
    parse_roles,
    set_disabled,
)
from hub.users.passwords import WeakPassword
from hub.users.tokens import actor_for_token, create_token, list_tokens, revoke_token
from tests.web import LOGINS, Clock, Login

SYSTEM = system_actor("test")


def _all_bytes(hub: Hub) -> str:
    """Every value of the users and tokens tables, as one text to search."""
    with hub.db.hub.connect() as connection:
        rows = [*connection.execute(select(users)), *connection.execute(select(api_tokens))]
    return "\n".join(repr(tuple(row)) for row in rows)


def test_passwords_are_argon2id_with_rfc_9106_parameters(real_password_hashes: None) -> None:
    hashed = passwords.hash_password("a long enough password")
    assert hashed.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert passwords.verify(hashed, "a long enough password")
    assert not passwords.verify(hashed, "a long enough passwore")
    assert not passwords.verify("not a hash", "a long enough password")
    assert not passwords.verify(hashed, "x" * 5000)


@pytest.mark.parametrize("weak", ["short", " leading-space-pw", "trailing-space-pw ", "x" * 1025])
def test_weak_passwords_are_refused(weak: str) -> None:
    with pytest.raises(WeakPassword):
        passwords.hash_password(weak)


def test_the_totp_secret_is_kept_sealed_and_bound_to_its_login(
    hub: Hub, regions_ab: tuple[MemberRegion, MemberRegion]
) -> None:
    enrolment = add_user(
        hub,
        SYSTEM,
        login="alice",
        name="Alice Andersson",
        roles={"14": {Role.REVIEWER}},
        password="alice-correct-horse",
    )
    assert enrolment is not None and enrolment.uri.startswith("otpauth://totp/agenthub:alice?")
    assert f"secret={enrolment.secret}" in enrolment.uri
    stored = _all_bytes(hub)
    assert enrolment.secret not in stored and "alice-correct-horse" not in stored
    with hub.db.hub.connect() as connection:
        sealed = connection.execute(
            select(users.c.totp_secret_enc).where(users.c.login == "alice")
        ).scalar_one()
    assert totp.open_secret(hub.keys, "alice", sealed) == enrolment.secret
    with pytest.raises(InvalidTag):
        totp.open_secret(hub.keys, "bob", sealed)  # moved to another account, it opens nowhere


def test_a_code_is_accepted_for_the_step_beside_now_and_only_once() -> None:
    from datetime import UTC, datetime, timedelta

    secret = totp.new_secret()
    now = datetime(2026, 11, 1, 12, 0, 15, tzinfo=UTC)
    code = totp.code_at(secret, now)
    step = totp.accepted_step(secret, code, now, None)
    assert step is not None
    assert totp.accepted_step(secret, code, now, step) is None  # spent
    assert totp.accepted_step(secret, f"{code[:3]} {code[3:]}", now, None) == step
    late = totp.code_at(secret, now - timedelta(seconds=30))
    assert totp.accepted_step(secret, late, now, None) == step - 1  # one step of drift
    stale = totp.code_at(secret, now - timedelta(seconds=90))
    assert totp.accepted_step(secret, stale, now, None) is None
    assert totp.accepted_step(secret, "12345", now, None) is None
    assert totp.accepted_step(secret, "abcdef", now, None) is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"login": "Alice"}, "a login is"),
        ({"login": "a b"}, "a login is"),
        ({"name": "  "}, "a name is"),
        ({"hsa_id": "not-an-hsa-id"}, "is not an HSA-id"),
        ({"roles": {"99": {Role.REVIEWER}}}, "region 99 is not registered"),
        ({"roles": {}}, "at least one --role"),
        ({"operator": True}, "the operator holds no region roles"),
        ({"password": None, "hsa_id": None}, "signs in with SITHS and needs an --hsa-id"),
    ],
)
def test_an_account_that_could_not_work_is_refused(
    hub: Hub, regions_ab: tuple[MemberRegion, MemberRegion], changes: dict[str, Any], message: str
) -> None:
    given: dict[str, Any] = {
        "login": "alice",
        "name": "Alice Andersson",
        "hsa_id": "SE2321000131-A1",
        "roles": {"14": {Role.REVIEWER}},
        "password": "alice-correct-horse",
        **changes,
    }
    with pytest.raises(UserError, match=message):
        add_user(hub, SYSTEM, **given)
    with hub.db.hub.connect() as connection:
        assert list_users(connection) == []


def test_logins_and_hsa_ids_are_each_one_persons(
    hub: Hub, regions_ab: tuple[MemberRegion, MemberRegion]
) -> None:
    alice = LOGINS["alice"]
    common = {"name": "X", "roles": {"14": {Role.VIEWER}}, "password": "x-long-enough-pw"}
    add_user(hub, SYSTEM, login="alice", hsa_id=alice.hsa_id, **common)
    with pytest.raises(UserError, match="already exists"):
        add_user(hub, SYSTEM, login="alice", **common)
    with pytest.raises(UserError, match="already has HSA-id"):
        add_user(hub, SYSTEM, login="alva", hsa_id=alice.hsa_id, **common)


def test_a_siths_only_account_has_no_password_and_no_second_factor(
    hub: Hub, regions_ab: tuple[MemberRegion, MemberRegion]
) -> None:
    enrolment = add_user(
        hub,
        SYSTEM,
        login="sara",
        name="Sara S",
        hsa_id="SE2321000131-S5",
        roles={"14": {Role.VIEWER}},
    )
    assert enrolment is None
    with hub.db.hub.connect() as connection:
        sara = get_user(connection, login="sara")
    assert sara is not None and not sara.has_password and not sara.has_totp


def test_roles_are_parsed_per_region_and_the_operator_is_no_region_role() -> None:
    assert parse_roles([("reviewer", "14"), ("viewer", "14"), ("submitter", "01")]) == {
        "14": {Role.REVIEWER, Role.VIEWER},
        "01": {Role.SUBMITTER},
    }
    with pytest.raises(UserError, match="hub-wide"):
        parse_roles([("operator", "14")])
    with pytest.raises(UserError, match="unknown role"):
        parse_roles([("boss", "14")])
    with pytest.raises(UserError, match="two digits"):
        parse_roles([("viewer", "1")])


def test_changes_to_accounts_are_in_the_operator_audit_without_secrets(
    hub: Hub, web_users: dict[str, Login]
) -> None:
    change_roles(hub, SYSTEM, "bob", grant={"01": {Role.VIEWER}})
    set_disabled(hub, SYSTEM, "bob", True)
    issued = create_token(hub, SYSTEM, "alice", "14", label="lab")
    revoke_token(hub, SYSTEM, issued.id)
    with hub.db.hub.connect() as connection:
        audit = connection.execute(select(operator_audit).order_by(operator_audit.c.id)).all()
    actions = [row.action for row in audit]
    assert actions.count("user.added") == 4
    assert actions[-4:] == ["user.roles_changed", "user.disabled", "token.created", "token.revoked"]
    assert "viewer:01 viewer:14" in audit[-4].detail
    text = "\n".join(f"{row.actor} {row.detail}" for row in audit)
    for persona in LOGINS.values():
        assert persona.password not in text and persona.totp_secret not in text
    assert issued.token not in text and audit[-2].lan_code == "14"


def test_a_token_is_kept_only_as_its_hash(hub: Hub, web_users: dict[str, Login]) -> None:
    issued = create_token(hub, SYSTEM, "alice", "14", label="lab system")
    assert issued.token.startswith("ahub_") and len(issued.token) == 48
    assert issued.token not in _all_bytes(hub)
    with hub.db.hub.connect() as connection:
        stored = connection.execute(select(api_tokens.c.token_hash)).scalar_one()
        listed = list_tokens(connection)
    assert stored == hashlib.sha256(issued.token.encode()).hexdigest()
    assert [(t.login, t.lan, t.label) for t in listed] == [("alice", "14", "lab system")]
    assert issued.token not in repr(listed)


def test_a_token_acts_as_its_user_in_its_region_until_any_reason_to_stop(
    hub: Hub, web_users: dict[str, Login], clock: Clock
) -> None:
    issued = create_token(hub, SYSTEM, "alice", "14", days=30)
    actor = actor_for_token(hub, issued.token)
    assert actor is not None and actor.label == "user:alice" and actor.auth_method == "token"
    assert dict(actor.roles) == {"14": frozenset({Role.REVIEWER})}
    assert actor_for_token(hub, issued.token[:-1] + "x") is None
    assert actor_for_token(hub, "ahub_short") is None
    with hub.db.hub.connect() as connection:
        assert list_tokens(connection)[0].last_used_at is not None
    # A role revoked in the token's region ends it; granted again, it works again.
    change_roles(hub, SYSTEM, "alice", revoke={"14": {Role.REVIEWER}}, grant={"01": {Role.VIEWER}})
    assert actor_for_token(hub, issued.token) is None
    change_roles(hub, SYSTEM, "alice", grant={"14": {Role.REVIEWER}})
    assert actor_for_token(hub, issued.token) is not None
    # Disabled, and enabled again.
    set_disabled(hub, SYSTEM, "alice", True)
    assert actor_for_token(hub, issued.token) is None
    set_disabled(hub, SYSTEM, "alice", False)
    assert actor_for_token(hub, issued.token) is not None
    # Expiry.
    clock.advance(days=31)
    assert actor_for_token(hub, issued.token) is None


def test_a_revoked_token_is_refused(hub: Hub, web_users: dict[str, Login]) -> None:
    issued = create_token(hub, SYSTEM, "bob", "14")
    revoke_token(hub, SYSTEM, issued.id)
    assert actor_for_token(hub, issued.token) is None


def test_a_token_is_only_for_a_region_the_user_holds_a_role_in(
    hub: Hub, web_users: dict[str, Login]
) -> None:
    with pytest.raises(UserError, match="holds no role in region 01"):
        create_token(hub, SYSTEM, "alice", "01")
    with pytest.raises(UserError, match="lasts"):
        create_token(hub, SYSTEM, "alice", "14", days=400)


# --- the commands -------------------------------------------------------------------------------


@pytest.fixture
def runner(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """Click's runner on the test hub's database."""
    settings = hub.settings
    monkeypatch.setenv("AGENTHUB_ENV", "test")
    monkeypatch.setenv("AGENTHUB_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("AGENTHUB_DATABASE_URL", settings.database_url)
    return CliRunner()


def test_user_add_prints_the_second_factor_once_and_list_shows_no_secret(
    runner: CliRunner,
    hub: Hub,
    regions_ab: tuple[MemberRegion, MemberRegion],
    tmp_path: Path,
) -> None:
    secret_file = tmp_path / "password"
    secret_file.write_text("alice-correct-horse\n")
    added = runner.invoke(
        cli,
        [
            "user",
            "add",
            "--login",
            "alice",
            "--name",
            "Alice Andersson",
            "--hsa-id",
            "SE2321000131-A1",
            "--role",
            "reviewer",
            "--lan",
            "14",
            "--password-file",
            str(secret_file),
        ],
    )
    assert added.exit_code == 0, added.output
    assert "user alice added (reviewer:14)" in added.output
    [secret] = [line.split()[-1] for line in added.output.splitlines() if "secret:" in line]
    assert f"otpauth://totp/agenthub:alice?secret={secret}" in added.output
    listed = runner.invoke(cli, ["user", "list"])
    assert listed.exit_code == 0 and "alice" in listed.output and "reviewer:14" in listed.output
    assert secret not in listed.output and "argon2" not in listed.output
    assert "password+totp,siths" in listed.output
    # The password typed at the prompt (twice), and roles in two regions.
    prompted = runner.invoke(
        cli,
        [
            *("user", "add", "--login", "bob", "--name", "Bob Berg"),
            *("--role", "viewer", "--lan", "14", "--role", "submitter", "--lan", "01"),
        ],
        input="bob-battery-staple\nbob-battery-staple\n",
    )
    assert prompted.exit_code == 0, prompted.output
    assert "bob-battery-staple" not in prompted.output
    with hub.db.hub.connect() as connection:
        bob = get_user(connection, login="bob")
    assert bob is not None and dict(bob.roles) == {
        "01": frozenset({Role.SUBMITTER}),
        "14": frozenset({Role.VIEWER}),
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--role", "viewer"], "give --role and --lan together"),
        (
            ["--role", "viewer", "--role", "reviewer", "--lan", "14", "--lan", "01", "--lan", "03"],
            "one --lan for all roles",
        ),
        (["--operator", "--role", "viewer", "--lan", "14"], "the operator holds no region roles"),
        (["--role", "viewer", "--lan", "14", "--no-password"], "needs an --hsa-id"),
    ],
)
def test_user_add_refuses_what_cannot_work(
    runner: CliRunner,
    regions_ab: tuple[MemberRegion, MemberRegion],
    args: list[str],
    message: str,
) -> None:
    result = runner.invoke(cli, ["user", "add", "--login", "x", "--name", "X", *args], input="\n")
    assert result.exit_code != 0 and message in result.output, result.output


def test_token_create_prints_the_token_alone_and_once(
    runner: CliRunner, hub: Hub, web_users: dict[str, Login]
) -> None:
    created = runner.invoke(
        cli, ["token", "create", "--login", "alice", "--lan", "14", "--label", "lab"]
    )
    assert created.exit_code == 0, created.output
    # stdout is the token and nothing else, for TOKEN=$(agenthub token create ...).
    token = created.stdout.strip()
    assert "shown this once" in created.stderr
    assert token.startswith("ahub_") and actor_for_token(hub, token) is not None
    listed = runner.invoke(cli, ["token", "list"])
    assert "alice" in listed.output and "active" in listed.output and token not in listed.output
    token_id = listed.output.splitlines()[1].split()[0]
    assert runner.invoke(cli, ["token", "revoke", "--id", token_id]).exit_code == 0
    assert actor_for_token(hub, token) is None
    assert "revoked" in runner.invoke(cli, ["token", "list", "--login", "alice"]).output


def test_user_disable_ends_sessions_and_enable_unlock_reset_totp_work(
    runner: CliRunner, hub: Hub, web_users: dict[str, Login]
) -> None:
    with hub.db.hub.begin() as connection:
        connection.execute(
            update(users)
            .where(users.c.login == "bob")
            .values(failed_logins=4, locked_until=users.c.created_at)
        )
    assert "user bob disabled" in runner.invoke(cli, ["user", "disable", "--login", "bob"]).output
    assert "disabled" in runner.invoke(cli, ["user", "list"]).output
    assert runner.invoke(cli, ["user", "enable", "--login", "bob"]).exit_code == 0
    assert runner.invoke(cli, ["user", "unlock", "--login", "bob"]).exit_code == 0
    reset = runner.invoke(cli, ["user", "reset-totp", "--login", "bob"])
    assert reset.exit_code == 0 and "secret:" in reset.output
    assert LOGINS["bob"].totp_secret not in reset.output
    roles = runner.invoke(cli, ["user", "roles", "--login", "bob", "--grant", "reviewer:01"])
    assert roles.exit_code == 0 and "reviewer:01 viewer:14" in roles.output
    with hub.db.hub.connect() as connection:
        bob = get_user(connection, login="bob")
        held = connection.execute(select(user_roles).where(user_roles.c.user_id == bob.id)).all()
    assert bob is not None and bob.failed_logins == 0 and not bob.disabled and len(held) == 2
