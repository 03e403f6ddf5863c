"""Indexes for the read side's keyset pages.

A bank's search (``engine.read.payments.search_payments``) walks its payments newest
first by ``(occurred_at, payment_id)``, as the payer's bank or as the payee's: one
index for each side. Notifications are listed oldest first by
``(created_at, notification_id)``. Indexes only: nothing is rewritten.

Revision ID: 0013_read
Revises: 0012
"""

from alembic import op

revision = "0013_read"
down_revision = "0012"
branch_labels = None
depends_on = None

INDEXES = (
    ("ix_payments_payer_bank_occurred", "payments", ["payer_bank", "occurred_at", "payment_id"]),
    ("ix_payments_payee_bank_occurred", "payments", ["payee_bank", "occurred_at", "payment_id"]),
    ("ix_notifications_created", "notifications", ["created_at", "notification_id"]),
)


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns, unique=False)


def downgrade() -> None:
    for name, table, _columns in reversed(INDEXES):
        op.drop_index(name, table_name=table)
