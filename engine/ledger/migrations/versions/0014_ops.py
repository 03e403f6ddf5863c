"""Operator actions: an append-only, hash-chained log of them, and reference-data versions.

``operator_actions`` holds every operator action (who, when, what, old and new values),
each row chained to the one before by ``prev_hash``; ``reference_versions`` holds every
change of a fee, a limit or a bank's delivery settings, numbered, with the time it takes
effect. Rows of both are never updated or deleted (triggers refuse both, as for
``approved_schemas``).

Revision ID: 0014_ops
Revises: 0013_read
"""

import sqlalchemy as sa
from alembic import op

revision = "0014_ops"
down_revision = "0013_read"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
ACTIONS = "operator_actions"
VERSIONS = "reference_versions"


def upgrade() -> None:
    op.create_table(
        ACTIONS,
        sa.Column("seq", BIG_ID, autoincrement=False, nullable=False),
        sa.Column("acted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=False),
        sa.Column("old_value", sa.Text(), nullable=True),
        sa.Column("new_value", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("row_hash", sa.String(length=64), nullable=False),
        sa.CheckConstraint("seq >= 1", name=op.f("ck_operator_actions_seq")),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_operator_actions")),
    )
    op.create_table(
        VERSIONS,
        sa.Column("version", BIG_ID, autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("item", sa.String(length=64), nullable=False),
        sa.Column("old_value", sa.Text(), nullable=True),
        sa.Column("new_value", sa.Text(), nullable=True),
        sa.Column("announced_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("effective_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action_seq", BIG_ID, nullable=False),
        sa.CheckConstraint("version >= 1", name=op.f("ck_reference_versions_version")),
        sa.CheckConstraint(
            "effective_from >= announced_at", name=op.f("ck_reference_versions_notice")
        ),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_reference_versions")),
    )
    for table in (ACTIONS, VERSIONS):
        _make_append_only(table)


def downgrade() -> None:
    for table in (VERSIONS, ACTIONS):
        _drop_append_only_guard(table)
        op.drop_table(table)


def _make_append_only(table: str) -> None:
    message = f"{table} is append-only: record a new action instead"
    if op.get_bind().dialect.name == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
            )
        return
    op.execute(
        f"CREATE FUNCTION {table}_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"BEGIN RAISE EXCEPTION '{message}'; END $$"
    )
    op.execute(
        f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION {table}_append_only()"
    )


def _drop_append_only_guard(table: str) -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
        return
    op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
    op.execute(f"DROP FUNCTION IF EXISTS {table}_append_only()")
