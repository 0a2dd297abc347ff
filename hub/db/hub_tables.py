"""Every table of the shared ``hub`` schema, declared once: no personal data lives here.

Alembic's ``hub`` environment (``migrations/hub``) compares against :data:`hub_metadata`, so a
table added here without a migration fails the drift test.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    false,
)

from hub.db.types import BigId

HUB_SCHEMA = "hub"

hub_metadata = MetaData(schema=HUB_SCHEMA)

# The region registry: member regions, their agreements, environments and drops.
regions = Table(
    "regions",
    hub_metadata,
    Column("lan_code", String(2), primary_key=True),
    Column("hsa_id", String(64), nullable=False),
    Column("name", String(200), nullable=False),
    Column("organisation_number", String(20)),
    Column("drop_url", String(500)),
    Column("drop_settings", JSON, nullable=False, default=dict),
    Column("agreement_signed", Date),
    Column("platform_confirmed", Date),
    Column("environment", String(8), nullable=False, default="SIT"),
    Column("active_from", Date),
    Column("active_to", Date),
    # When ``region end`` ended the agreement: from then on the region is refused everywhere,
    # whatever its dates say, and ``regions sync`` does not revive it (``region reinstate`` does).
    Column("ended_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # The region's review policy: a flagged record (protected identity, blocked data, an
    # objection) needs the approval of a second reviewer, a different user, before it is sent.
    Column("second_review_flagged", Boolean, nullable=False, server_default=false()),
)

region_keys = Table(
    "region_keys",
    hub_metadata,
    Column("lan_code", String(2), primary_key=True),
    # The region's data key, wrapped (AES-GCM) with the hub's master key.
    Column("wrapped_key", LargeBinary),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # When the key was destroyed; kept when ``region reinstate`` gives the region a new one, so
    # that what was sealed before then is known to be unreadable for good.
    Column("destroyed_at", DateTime(timezone=True)),
)

# What operators did (onboarding, offboarding, resends, acknowledgements): never personal data.
operator_audit = Table(
    "operator_audit",
    hub_metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(100), nullable=False),
    Column("lan_code", String(2)),
    Column("detail", Text, nullable=False, default=""),
)

# Each region's drop health and backoff (hub.drops.state).
drop_state = Table(
    "drop_state",
    hub_metadata,
    Column("lan_code", String(2), primary_key=True),
    # None until the first attempt: "unknown" is not the same as "down".
    Column("reachable", Boolean),
    Column("last_check_at", DateTime(timezone=True)),
    Column("last_success_at", DateTime(timezone=True)),
    Column("last_failure_at", DateTime(timezone=True)),
    Column("failing_since", DateTime(timezone=True)),
    Column("consecutive_failures", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("error_permanent", Boolean, nullable=False, default=False),
    Column("next_attempt_at", DateTime(timezone=True)),
    Column("config_hash", String(64)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Which ``agenthub worker`` processes are alive, for ``drops status``.
worker_heartbeats = Table(
    "worker_heartbeats",
    hub_metadata,
    Column("worker_id", String(64), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("seen_at", DateTime(timezone=True), nullable=False),
)

# Operator alerts of the senders: ids, codes and masked texts only.
alerts = Table(
    "alerts",
    hub_metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("lan_code", String(2), nullable=False),
    Column("to_lan", String(2)),
    Column("record_id", String(36)),
    # refused (ERROR answer), configuration (VP002–VP007, …), exhausted (attempts used up).
    Column("kind", String(20), nullable=False),
    Column("code", String(32), nullable=False),
    Column("detail", Text, nullable=False),
    Column("acknowledged_at", DateTime(timezone=True)),
    Column("acknowledged_by", String(200)),
    Index("ix_alerts_open", "acknowledged_at", "at"),
)

# People who sign in to the web workspace or the API: a region's reviewers, viewers and
# submitters, and the agent's operators. No personal data of the women; the users' own names and
# HSA-ids are what the logs name them by.
users = Table(
    "users",
    hub_metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("login", String(64), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    # The user's personal HSA-id (SITHS): how a client certificate maps to the user.
    Column("hsa_id", String(64), unique=True),
    # Argon2id (argon2-cffi); None for a user who signs in with SITHS only.
    Column("password_hash", Text),
    # The TOTP secret, sealed with the master key; None until the second factor is enrolled.
    Column("totp_secret_enc", LargeBinary),
    # The time step of the last code accepted: a code is good once (RFC 6238, section 5.2).
    Column("totp_last_step", BigInteger),
    # The agent's operator (metadata only, every region); region roles are in user_roles.
    Column("operator", Boolean, nullable=False, server_default=false()),
    Column("failed_logins", Integer, nullable=False, server_default="0"),
    Column("locked_until", DateTime(timezone=True)),
    Column("disabled_at", DateTime(timezone=True)),
    Column("last_login_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# A user's roles, one row per (region, role): reviewer, viewer or submitter.
user_roles = Table(
    "user_roles",
    hub_metadata,
    Column("user_id", BigInteger, ForeignKey("hub.users.id", ondelete="CASCADE"), nullable=False),
    Column("lan_code", String(2), ForeignKey("hub.regions.lan_code"), nullable=False),
    Column("role", String(16), nullable=False),
    PrimaryKeyConstraint("user_id", "lan_code", "role"),
)

# API bearer tokens, bound to one user and one region; only a hash of the token is kept.
api_tokens = Table(
    "api_tokens",
    hub_metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("user_id", BigInteger, ForeignKey("hub.users.id", ondelete="CASCADE"), nullable=False),
    Column("lan_code", String(2), ForeignKey("hub.regions.lan_code"), nullable=False),
    # SHA-256 of the token (a long random secret: no salt or slow hash needed).
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("label", String(100), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True)),
    Column("last_used_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
)

# Server-side web sessions: the cookie holds a random id, the database a hash of it, so every web
# node sees every session and a copy of the database signs nobody in.
web_sessions = Table(
    "web_sessions",
    hub_metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("user_id", BigInteger, ForeignKey("hub.users.id", ondelete="CASCADE")),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_seen_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    # password+totp, siths; None while a sign-in is half done.
    Column("auth_method", String(32)),
    # The rest of the session (CSRF token, a sign-in waiting for its second factor, the locale).
    Column("data", JSON, nullable=False),
    Index("ix_web_sessions_expires", "expires_at"),
)
