"""ISO 20022 at the edge: each bank's notification format, and remittance information.

- ``banks.notification_format``: how the bank's webhook is told of its payments,
  ``json`` (the default, also when NULL) or ``pacs.002`` (ISO 20022 status reports, and
  ``pacs.004`` for returns); set from reference data.
- ``payments.remittance_info``: the payer's unstructured remittance information for the
  payee (ISO 20022 ``RmtInf/Ustrd``, 140 characters), when the bank sent one.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


# Plain ALTER TABLE, never a batch copy of the table: on SQLite a copy of ``payments``
# would lose its transition trigger (0007). SQLite has dropped columns since 3.35.


def upgrade() -> None:
    op.add_column("banks", sa.Column("notification_format", sa.String(8), nullable=True))
    op.add_column("payments", sa.Column("remittance_info", sa.String(140), nullable=True))


def downgrade() -> None:
    op.drop_column("payments", "remittance_info")
    op.drop_column("banks", "notification_format")
