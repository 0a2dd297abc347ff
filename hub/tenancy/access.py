"""Who may act on which region: actors, their roles per region, and the region scope.

Every service that reads or changes a region's data takes a :class:`RegionScope`, and the only
way to get one is :func:`region_scope`, which checks that the actor holds a role in that region
that grants what the service needs. A region the actor holds no role in is answered exactly as a
region that does not exist (:class:`NotFound`): another region's ids answer 404, and nobody
learns which regions the hub serves by probing.

Roles (per region unless said otherwise):

==============  ==============================================================================
reviewer        performs the manual secrecy review: opens and decides records
viewer          reads what was sent and received; decides nothing
submitter       delivers extracts (upload, API) and enters records by hand
operator        the agent's operator (hub-wide): regions, queues, resends, logs — metadata and
                masked personnummer only, never a woman's content
==============  ==============================================================================

The hub's own jobs and the local command line act as the *system* actor: a person at the
machine's shell already holds the database and the master key, so the CLI is not a boundary;
what it does is still written to the logs under the login that ran it.
"""

from __future__ import annotations

import enum
import getpass
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

from sqlalchemy import Engine

from hub.context import Hub
from hub.db import read_once_more_if_lost
from hub.tenancy.keys import RegionCipher
from hub.tenancy.registry import MemberRegion, get_region


class Role(enum.StrEnum):
    """A role a user holds in one region (``operator``: in the whole hub)."""

    REVIEWER = "reviewer"
    VIEWER = "viewer"
    SUBMITTER = "submitter"
    OPERATOR = "operator"


class Permission(enum.StrEnum):
    """What a service needs the actor to be allowed to do in a region."""

    #: Lists and metadata: ids, states, times, masked personnummer.
    READ_METADATA = "read_metadata"
    #: A woman's content: a record's fields, a received message, a download.
    READ_CONTENT = "read_content"
    #: Put records into the region's review queue (extracts, hand-entered records).
    SUBMIT = "submit"
    #: Approve or refuse a record for disclosure.
    DECIDE = "decide"
    #: Operator actions: resend, acknowledge alerts, region administration.
    OPERATE = "operate"
    #: The region's access log (who viewed what).
    READ_ACCESS_LOG = "read_access_log"


GRANTS: Mapping[Role, frozenset[Permission]] = {
    Role.REVIEWER: frozenset(
        {
            Permission.READ_METADATA,
            Permission.READ_CONTENT,
            Permission.DECIDE,
            Permission.READ_ACCESS_LOG,
        }
    ),
    Role.VIEWER: frozenset(
        {Permission.READ_METADATA, Permission.READ_CONTENT, Permission.READ_ACCESS_LOG}
    ),
    Role.SUBMITTER: frozenset({Permission.READ_METADATA, Permission.SUBMIT}),
    Role.OPERATOR: frozenset(
        {Permission.READ_METADATA, Permission.OPERATE, Permission.READ_ACCESS_LOG}
    ),
}

ActorKind = Literal["user", "system"]


@dataclass(frozen=True)
class Actor:
    """Someone (or something) acting on the hub: a signed-in user, a token, a job, the CLI."""

    kind: ActorKind
    #: What the logs name: ``user:alice``, ``cli:root``, ``worker:host:pid:abc``.
    label: str
    user_id: int | None = None
    name: str | None = None
    hsa_id: str | None = None
    #: län code → the roles held there.
    roles: Mapping[str, frozenset[Role]] = field(default_factory=dict)
    #: The agent's operator: holds :attr:`Role.OPERATOR` in every region.
    operator: bool = False
    #: How the actor proved who it is: ``password+totp``, ``siths``, ``token``, ``cli``, ``job``.
    auth_method: str | None = None

    def roles_in(self, lan: str) -> frozenset[Role]:
        """The roles this actor holds in region ``lan``."""
        held = set(self.roles.get(lan, frozenset()))
        if self.operator:
            held.add(Role.OPERATOR)
        return frozenset(held)

    def may(self, lan: str, permission: Permission) -> bool:
        """Whether this actor may do ``permission`` in region ``lan``."""
        if self.kind == "system":
            return True
        return any(permission in GRANTS[role] for role in self.roles_in(lan))

    def knows(self, lan: str) -> bool:
        """Whether region ``lan`` exists for this actor at all (it holds some role there)."""
        return self.kind == "system" or bool(self.roles_in(lan))

    @property
    def role_label(self) -> str:
        """The roles as one word for logs (``reviewer``, ``operator``, ``system``)."""
        if self.kind == "system":
            return "system"
        names = sorted({role.value for roles in self.roles.values() for role in roles})
        if self.operator:
            names.append(Role.OPERATOR.value)
        return ",".join(names) or "none"


def system_actor(label: str, auth_method: str = "job") -> Actor:
    """The hub's own jobs (``worker:…``) or the local command line (``cli:…``)."""
    return Actor(kind="system", label=label, auth_method=auth_method)


def cli_actor() -> Actor:
    """The operator at this machine's shell, named by their login in every log line."""
    try:
        login = getpass.getuser()
    except OSError:
        login = "unknown"
    return system_actor(f"cli:{login}", "cli")


class AccessError(Exception):
    """Base of the refusals of :func:`region_scope`."""


class NotFound(AccessError, LookupError):
    """No such region for this actor (it does not exist, or the actor holds no role there)."""


class Forbidden(AccessError, PermissionError):
    """The actor holds a role in the region, but not one that allows this."""


def region_cipher(hub: Hub, lan_code: str) -> RegionCipher:
    """The region's cipher, its key's row looked at now (one small query; unwrapped once).

    Raises :class:`~hub.tenancy.keys.KeyDestroyed` when the key was destroyed, in this process
    or another: every reader and sealer comes through here, but the inbound store once it holds
    a copy (its group commit checks the key's row in the same transaction as the insert).
    """
    return read_once_more_if_lost(
        hub.db.hub, lambda connection: hub.keys.cipher(connection, lan_code)
    )


@dataclass(frozen=True)
class RegionScope:
    """One region's store, key and registry entry, handed to an actor allowed to use them."""

    hub: Hub
    actor: Actor
    region: MemberRegion

    @property
    def lan(self) -> str:
        """The region's län code."""
        return self.region.lan_code

    @property
    def engine(self) -> Engine:
        """The engine of this region's store, and of nothing else."""
        return self.hub.db.region(self.lan)

    @cached_property
    def cipher(self) -> RegionCipher:
        """The region's cipher, its key checked once for this scope (KeyDestroyed if gone)."""
        return region_cipher(self.hub, self.lan)

    def may(self, permission: Permission) -> bool:
        """Whether the actor may also do ``permission`` here."""
        return self.actor.may(self.lan, permission)

    def require(self, permission: Permission) -> None:
        """Raise :class:`Forbidden` unless the actor may do ``permission`` here."""
        if not self.may(permission):
            raise Forbidden(f"{permission.value} is not allowed in region {self.lan}")


def region_scope(hub: Hub, actor: Actor, lan: str, permission: Permission) -> RegionScope:
    """The scope of region ``lan`` for ``actor``, who must be allowed ``permission`` there.

    Raises :class:`NotFound` when the region is not registered or the actor holds no role in
    it, and :class:`Forbidden` when the actor's roles there do not allow ``permission``.
    """
    if not actor.knows(lan):
        raise NotFound(f"region {lan} is not registered")
    region = read_once_more_if_lost(hub.db.hub, lambda connection: get_region(connection, lan))
    if region is None:
        raise NotFound(f"region {lan} is not registered")
    scope = RegionScope(hub, actor, region)
    scope.require(permission)
    return scope
