"""The console's users, browser sessions and machines' API tokens.

``console_users`` keeps an argon2 hash of each password, never the password; sessions
and tokens keep the SHA-256 of their secret, never the secret (``engine.ledger.console``).

Revision ID: 0019_console_auth
Revises: 0017_positions
"""

import sqlalchemy as sa
from alembic import op

revision = "0019_console_auth"
down_revision = "0017_positions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "console_users",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("bank_code", sa.String(length=8), nullable=True),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("disabled", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "role IN ('operator', 'auditor', 'bank')", name=op.f("ck_console_users_role")
        ),
        sa.CheckConstraint(
            "(role = 'bank') = (bank_code IS NOT NULL)",
            name=op.f("ck_console_users_bank_for_bank_role"),
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_console_users")),
    )
    op.create_table(
        "console_sessions",
        sa.Column("id_hash", sa.String(length=64), nullable=False),
        sa.Column("user_name", sa.String(length=64), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_name"],
            ["console_users.name"],
            name=op.f("fk_console_sessions_user_name_console_users"),
        ),  # fmt: skip
        sa.PrimaryKeyConstraint("id_hash", name=op.f("pk_console_sessions")),
    )
    op.create_index(
        op.f("ix_console_sessions_user_name"), "console_sessions", ["user_name"], unique=False
    )
    op.create_index(
        op.f("ix_console_sessions_expires_at"), "console_sessions", ["expires_at"], unique=False
    )
    op.create_table(
        "api_tokens",
        sa.Column("token_id", sa.String(length=16), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("user_name", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_name"],
            ["console_users.name"],
            name=op.f("fk_api_tokens_user_name_console_users"),
        ),  # fmt: skip
        sa.PrimaryKeyConstraint("token_id", name=op.f("pk_api_tokens")),
    )
    op.create_index(op.f("ix_api_tokens_user_name"), "api_tokens", ["user_name"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_api_tokens_user_name"), table_name="api_tokens")
    op.drop_table("api_tokens")
    op.drop_index(op.f("ix_console_sessions_expires_at"), table_name="console_sessions")
    op.drop_index(op.f("ix_console_sessions_user_name"), table_name="console_sessions")
    op.drop_table("console_sessions")
    op.drop_table("console_users")
