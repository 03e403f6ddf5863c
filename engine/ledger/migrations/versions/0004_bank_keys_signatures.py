"""Trust between banks: the banks' public keys, and each payment's proof of origin.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

SIGNATURE_COLUMNS = (
    "signer_bank",
    "signer_key_id",
    "signature",
    "signed_digest",
)


def upgrade() -> None:
    op.create_table(
        "bank_keys",
        sa.Column("bank_code", sa.String(length=8), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("public_key", sa.String(length=64), nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "valid_until IS NULL OR valid_until > valid_from", name=op.f("ck_bank_keys_window")
        ),
        sa.ForeignKeyConstraint(
            ["bank_code"], ["banks.code"], name=op.f("fk_bank_keys_bank_code_banks")
        ),
        sa.PrimaryKeyConstraint("bank_code", "key_id", name=op.f("pk_bank_keys")),
    )
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("signer_bank", sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column("signer_key_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("signature", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("signed_digest", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("payments", schema=None) as batch_op:
        for name in reversed(SIGNATURE_COLUMNS):
            batch_op.drop_column(name)
    op.drop_table("bank_keys")
