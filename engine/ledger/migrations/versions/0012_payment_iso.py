"""The ISO 20022 ids and extras of payments that came in as ISO 20022.

``payment_iso`` holds, for a payment imported from a pacs.008 or pain.001, the bank's
``MsgId``, the message's name, ``InstrId``, ``EndToEndId``, ``TxId`` and ``UETR`` (echoed
in pacs.002, pacs.004 and the JSON notifications), and ``extras``: the elements Sakk does
not act on (postal addresses, structured remittance, ...) as JSON, for audit.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "payment_iso",
        sa.Column("payment_id", sa.String(length=73), nullable=False),  # engine.ids
        sa.Column("msg_id", sa.String(length=35), nullable=True),
        sa.Column("msg_name", sa.String(length=35), nullable=True),
        sa.Column("instr_id", sa.String(length=35), nullable=True),
        sa.Column("end_to_end_id", sa.String(length=35), nullable=True),
        sa.Column("tx_id", sa.String(length=35), nullable=True),
        sa.Column("uetr", sa.String(length=36), nullable=True),
        sa.Column("extras", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.payment_id"], name=op.f("fk_payment_iso_payment_id_payments")
        ),
        sa.PrimaryKeyConstraint("payment_id", name=op.f("pk_payment_iso")),
    )


def downgrade() -> None:
    op.drop_table("payment_iso")
