"""Indexes for the read side's search at a million payments and more.

Every search walks one index newest first and stops after a page
(``engine.read.payments``): each filter that narrows by one value leads an index
ending in ``(occurred_at, payment_id)``, the keyset order, so a rare state or reason
is found without reading the others. An account's last four digits are indexed as an
expression, ``substr(account, length(account) - 3)``, the same text on SQLite and
PostgreSQL, one index per side (payer, payee). A bank reference is looked up by its
own index, and a trace finds its payment's dead letters by theirs. A bank's search
by state or channel has an index of its own on each side (bank, then the filter).

The single-column indexes on ``occurred_at``, ``state`` and ``channel`` give way to
the composite ones that start with the same column (no query needs both).
Indexes only: nothing is rewritten.

Revision ID: 0021_read_indexes
Revises: 0017_positions
"""

import sqlalchemy as sa
from alembic import op

revision = "0021_read_indexes"
down_revision = "0020_proposals"
branch_labels = None
depends_on = None

KEYSET = ["occurred_at", "payment_id"]
LAST4 = "substr({column}, length({column}) - 3)"  # engine.ledger.models.LAST4_SQL

REPLACED = (  # (old index, its column): dropped for the composite that leads with it
    ("ix_payments_occurred_at", "occurred_at"),
    ("ix_payments_state", "state"),
    ("ix_payments_channel", "channel"),
)
CREATED = (
    ("ix_payments_occurred", "payments", KEYSET),
    ("ix_payments_state_occurred", "payments", ["state", *KEYSET]),
    ("ix_payments_reason_occurred", "payments", ["reason_code", *KEYSET]),
    ("ix_payments_channel_occurred", "payments", ["channel", *KEYSET]),
    ("ix_payments_bank_reference", "payments", ["bank_reference"]),
    ("ix_dead_letters_payment_id", "dead_letters", ["payment_id"]),
    # A bank's own payments of one state or channel: neither walk (the bank's, the
    # state's) is short when the other is rare, e.g. the treasury, which pays nobody.
    ("ix_payments_payer_bank_state", "payments", ["payer_bank", "state", *KEYSET]),
    ("ix_payments_payee_bank_state", "payments", ["payee_bank", "state", *KEYSET]),
    ("ix_payments_payer_bank_channel", "payments", ["payer_bank", "channel", *KEYSET]),
    ("ix_payments_payee_bank_channel", "payments", ["payee_bank", "channel", *KEYSET]),
)
EXPRESSIONS = (
    ("ix_payments_payer_last4", "payer_account"),
    ("ix_payments_payee_last4", "payee_account"),
)


def upgrade() -> None:
    for name, table, columns in CREATED:
        op.create_index(name, table, columns, unique=False)
    for name, column in EXPRESSIONS:
        op.create_index(name, "payments", [sa.text(LAST4.format(column=column)), *KEYSET])
    for name, _column in REPLACED:
        op.drop_index(name, table_name="payments")


def downgrade() -> None:
    for name, column in reversed(REPLACED):
        op.create_index(name, "payments", [column], unique=False)
    for name, _column in reversed(EXPRESSIONS):
        op.drop_index(name, table_name="payments")
    for name, table, _columns in reversed(CREATED):
        op.drop_index(name, table_name=table)
