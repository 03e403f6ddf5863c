"""The position journal: every change of a bank's position row, in write order.

``position_changes`` holds one row per change of a ``bank_positions`` row (a batch's
movement of one bank, a row opened, a cap set, a window settled), written in the same
transaction right after the update that locks the bank's row until commit: for one bank,
``id`` order is the order its row changed (``engine.ledger.positions``). Rows are never
updated or deleted (triggers refuse both, as for ``window_settlements``).

A ledger that already has position rows starts its journal from them: one ``OPENED``
row per position row (its posted position, holds, liquidity and the nets its settled
windows settled), and one ``LIMITS`` row per cap in force, named as found at upgrade.

Revision ID: 0018_position_journal
Revises: 0017_positions
"""

import sqlalchemy as sa
from alembic import op

revision = "0018_position_journal"
down_revision = "0017_positions"
branch_labels = None
depends_on = None

TABLE = "position_changes"
MESSAGE = "position_changes is append-only: a change of a position is a new row"
COLUMNS = (
    "bank_code, currency, cause, refs, ref_count, posted_delta_minor, holds_delta_minor, "
    "liquidity_delta_minor, settled_delta_minor, exposure_before_minor, "
    "exposure_after_minor, liquidity_after_minor, cap_minor, liquidity_checked_minor, "
    "settled_minor, read_version, version, occurred_at"
)
SETTLED = (
    "coalesce((SELECT sum(s.net_minor) FROM window_settlements s "
    "WHERE s.bank_code = p.bank_code AND s.currency = p.currency), 0)"
)
OPENED = f"""
INSERT INTO {TABLE} ({COLUMNS})
SELECT p.bank_code, p.currency, 'OPENED', '["upgrade"]', 1, p.posted_minor, p.holds_minor,
       p.liquidity_minor, {SETTLED}, 0, p.posted_minor + p.holds_minor, p.liquidity_minor,
       NULL, NULL, {SETTLED}, NULL, p.version, p.updated_at
  FROM bank_positions p ORDER BY p.bank_code, p.currency
"""
LIMITS = f"""
INSERT INTO {TABLE} ({COLUMNS})
SELECT p.bank_code, p.currency, 'LIMITS', '["upgrade"]', 1, 0, 0, 0, 0,
       p.posted_minor + p.holds_minor, p.posted_minor + p.holds_minor, p.liquidity_minor,
       l.net_debit_cap_minor, NULL, {SETTLED}, NULL, p.version, p.updated_at
  FROM bank_positions p
  JOIN bank_limits l ON l.bank_code = p.bank_code AND l.currency = p.currency
 ORDER BY p.bank_code, p.currency
"""


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),  # fmt: skip
        sa.Column("bank_code", sa.String(length=8), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("cause", sa.String(length=40), nullable=False),
        sa.Column("refs", sa.Text(), nullable=False),
        sa.Column("ref_count", sa.Integer(), nullable=False),
        sa.Column("posted_delta_minor", sa.BigInteger(), nullable=False),
        sa.Column("holds_delta_minor", sa.BigInteger(), nullable=False),
        sa.Column("liquidity_delta_minor", sa.BigInteger(), nullable=False),
        sa.Column("settled_delta_minor", sa.BigInteger(), nullable=False),
        sa.Column("exposure_before_minor", sa.BigInteger(), nullable=False),
        sa.Column("exposure_after_minor", sa.BigInteger(), nullable=False),
        sa.Column("liquidity_after_minor", sa.BigInteger(), nullable=False),
        sa.Column("cap_minor", sa.BigInteger(), nullable=True),
        sa.Column("liquidity_checked_minor", sa.BigInteger(), nullable=True),
        sa.Column("settled_minor", sa.BigInteger(), nullable=False),
        sa.Column("read_version", sa.BigInteger(), nullable=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_position_changes")),
    )
    op.create_index(
        "ix_position_changes_bank", TABLE, ["bank_code", "currency", "id"], unique=False
    )
    op.execute(OPENED)
    op.execute(LIMITS)
    _make_append_only()


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_no_update")
        op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_no_delete")
    else:
        op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_append_only ON {TABLE}")
        op.execute(f"DROP FUNCTION IF EXISTS {TABLE}_append_only()")
    op.drop_index("ix_position_changes_bank", table_name=TABLE)
    op.drop_table(TABLE)


def _make_append_only() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {TABLE}_no_{verb.lower()} BEFORE {verb} ON {TABLE} "
                f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END"
            )
        return
    op.execute(
        f"CREATE FUNCTION {TABLE}_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"BEGIN RAISE EXCEPTION '{MESSAGE}'; END $$"
    )
    op.execute(
        f"CREATE TRIGGER {TABLE}_append_only BEFORE UPDATE OR DELETE ON {TABLE} "
        f"FOR EACH ROW EXECUTE FUNCTION {TABLE}_append_only()"
    )
