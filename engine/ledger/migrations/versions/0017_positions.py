"""Interbank limits and positions: each bank's cap, its running position, its liquidity.

``bank_limits`` holds each bank's net debit cap and alert percentage per currency
(reference data); ``bank_positions`` one row per bank and currency that settlement moves
with one guarded update per batch (``engine.ledger.positions``); ``liquidity_movements``
each ``FundsIn`` and ``FundsOut`` as decided. The liquidity itself is a ledger account
per bank (kind ``LIQUIDITY``), created by the reference data loader.

Revision ID: 0017_positions
Revises: 0016_window_lifecycle
"""

import sqlalchemy as sa
from alembic import op

revision = "0017_positions"
down_revision = "0016_window_lifecycle"
branch_labels = None
depends_on = None


# A ledger that already settled payments starts from what it holds: a bank's posted
# position is its settlement account's balance (row and unfolded deltas: it takes +amount
# for each interbank payment the bank sends, -amount for each it receives), its holds its
# payers' active interbank holds. Liquidity starts at zero: the liquidity accounts come
# with the next load of the reference data.
BACKFILL = """
INSERT INTO bank_positions
    (bank_code, currency, posted_minor, holds_minor, liquidity_minor, version, updated_at)
SELECT a.bank_code, a.currency,
       a.balance_minor + coalesce((SELECT sum(d.delta_minor) FROM account_balance_deltas d
                                   WHERE d.account_number = a.number), 0),
       coalesce((SELECT sum(h.amount_minor - h.captured_minor) FROM holds h
                 JOIN payments p ON p.payment_id = h.payment_id
                 WHERE h.state = 'ACTIVE' AND h.bank_code = a.bank_code
                   AND h.currency = a.currency AND p.payer_bank <> p.payee_bank), 0),
       0, 0, NULL
  FROM accounts a
 WHERE a.kind = 'SETTLEMENT'
"""


def upgrade() -> None:
    op.create_table(
        "bank_limits",
        sa.Column("bank_code", sa.String(length=8), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("net_debit_cap_minor", sa.BigInteger(), nullable=False),
        sa.Column("alert_percent", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "net_debit_cap_minor >= 0", name=op.f("ck_bank_limits_cap_not_negative")
        ),
        sa.CheckConstraint(
            "alert_percent BETWEEN 1 AND 100", name=op.f("ck_bank_limits_alert_percent_range")
        ),
        sa.ForeignKeyConstraint(
            ["bank_code"], ["banks.code"], name=op.f("fk_bank_limits_bank_code_banks")
        ),
        sa.PrimaryKeyConstraint("bank_code", "currency", name=op.f("pk_bank_limits")),
    )
    op.create_table(
        "bank_positions",
        sa.Column("bank_code", sa.String(length=8), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("posted_minor", sa.BigInteger(), nullable=False),
        sa.Column("holds_minor", sa.BigInteger(), nullable=False),
        sa.Column("liquidity_minor", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["bank_code"], ["banks.code"], name=op.f("fk_bank_positions_bank_code_banks")
        ),
        sa.PrimaryKeyConstraint("bank_code", "currency", name=op.f("pk_bank_positions")),
    )
    op.create_table(
        "liquidity_movements",
        sa.Column("movement_id", sa.String(length=73), nullable=False),  # engine.ids
        sa.Column("bank_code", sa.String(length=8), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("kind", sa.String(length=9), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("outcome", sa.String(length=8), nullable=False),
        sa.Column("reason_code", sa.String(length=4), nullable=True),
        sa.Column("reason_message", sa.String(length=500), nullable=True),
        sa.Column("posting_id", sa.String(length=64), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("movement_id", name=op.f("pk_liquidity_movements")),
    )
    op.create_index(op.f("ix_liquidity_movements_bank_code"), "liquidity_movements", ["bank_code"])
    op.execute(BACKFILL)


def downgrade() -> None:
    op.drop_index(op.f("ix_liquidity_movements_bank_code"), "liquidity_movements")
    op.drop_table("liquidity_movements")
    op.drop_table("bank_positions")
    op.drop_table("bank_limits")
