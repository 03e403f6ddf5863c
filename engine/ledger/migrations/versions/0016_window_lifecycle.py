"""Settlement windows' lifecycle: its transitions, and what each settled window settled.

``settlement_window_events`` holds one row per transition of a window (close, settle,
confirm, abort), numbered per window and hash-chained per window; a window's state is
its last row. ``window_settlements`` holds each bank's settled net (position sign: + when
the bank paid) of a SETTLED window, written in the transaction that settles it. Rows of
both are never updated or deleted (triggers refuse both, as for ``approved_schemas``).

Revision ID: 0016_window_lifecycle
Revises: 0014_ops
"""

import sqlalchemy as sa
from alembic import op

revision = "0016_window_lifecycle"
down_revision = "0014_ops"
branch_labels = None
depends_on = None

EVENTS = "settlement_window_events"
SETTLEMENTS = "window_settlements"
APPEND_ONLY = {
    EVENTS: "settlement_window_events is append-only: a transition is a new row",
    SETTLEMENTS: "window_settlements is append-only: a settled window never changes",
}


def upgrade() -> None:
    op.create_table(
        EVENTS,
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),  # fmt: skip
        sa.Column("window_label", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("event", sa.String(length=8), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("instruction_ids", sa.Text(), nullable=False),
        sa.Column("document_sha256", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("row_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_settlement_window_events")),
        sa.UniqueConstraint("window_label", "seq", name=op.f("uq_settlement_window_events_seq")),
        sa.UniqueConstraint("event_id", name=op.f("uq_settlement_window_events_event_id")),
    )
    op.create_table(
        SETTLEMENTS,
        sa.Column("window_label", sa.String(length=32), nullable=False),
        sa.Column("bank_code", sa.String(length=8), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("net_minor", sa.BigInteger(), nullable=False),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "window_label", "bank_code", "currency", name=op.f("pk_window_settlements")
        ),
    )
    for table, message in APPEND_ONLY.items():
        _make_append_only(table, message)


def downgrade() -> None:
    for table in APPEND_ONLY:
        _drop_append_only_guard(table)
        op.drop_table(table)


def _make_append_only(table: str, message: str) -> None:
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
