"""Users, their roles per region, API tokens, web sessions, and each region's review policy

Revision ID: hub0004
Revises: hub0003
"""

import sqlalchemy as sa
from alembic import op

revision = "hub0004"
down_revision = "hub0003"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _batch_schema() -> str | None:
    # batch mode (SQLite) is not compiled through the schema_translate_map: name the real one.
    translate = op.get_bind().get_execution_options().get("schema_translate_map") or {}
    return translate.get("hub", "hub")  # type: ignore[no-any-return]


def upgrade() -> None:
    with op.batch_alter_table("regions", schema=_batch_schema()) as batch:
        batch.add_column(
            sa.Column(
                "second_review_flagged", sa.Boolean, nullable=False, server_default=sa.false()
            )
        )
    op.create_table(
        "users",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("login", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("hsa_id", sa.String(64)),
        sa.Column("password_hash", sa.Text),
        sa.Column("totp_secret_enc", sa.LargeBinary),
        sa.Column("totp_last_step", sa.BigInteger),
        sa.Column("operator", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("failed_logins", sa.Integer, nullable=False, server_default="0"),
        sa.Column("locked_until", sa.DateTime(timezone=True)),
        sa.Column("disabled_at", sa.DateTime(timezone=True)),
        sa.Column("last_login_at", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("login", name="uq_users_login"),
        sa.UniqueConstraint("hsa_id", name="uq_users_hsa_id"),
        schema="hub",
    )
    op.create_table(
        "user_roles",
        sa.Column(
            "user_id",
            sa.BigInteger,
            sa.ForeignKey("hub.users.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "lan_code", sa.String(2), sa.ForeignKey("hub.regions.lan_code"), nullable=False
        ),
        sa.Column("role", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "lan_code", "role"),
        schema="hub",
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column(
            "user_id",
            sa.BigInteger,
            sa.ForeignKey("hub.users.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "lan_code", sa.String(2), sa.ForeignKey("hub.regions.lan_code"), nullable=False
        ),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("label", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True)),
        sa.Column("last_used_at", sa.DateTime(timezone=True)),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),
        schema="hub",
    )
    op.create_table(
        "web_sessions",
        sa.Column("id_hash", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.BigInteger, sa.ForeignKey("hub.users.id", ondelete="CASCADE")),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("auth_method", sa.String(32)),
        sa.Column("data", sa.JSON, nullable=False),
        schema="hub",
    )
    op.create_index("ix_web_sessions_expires", "web_sessions", ["expires_at"], schema="hub")


def downgrade() -> None:
    op.drop_table("web_sessions", schema="hub")
    op.drop_table("api_tokens", schema="hub")
    op.drop_table("user_roles", schema="hub")
    op.drop_table("users", schema="hub")
    with op.batch_alter_table("regions", schema=_batch_schema()) as batch:
        batch.drop_column("second_review_flagged")
