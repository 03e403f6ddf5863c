"""Balance deltas: credits are appended, not written into a row every payment touches.

``account_balances`` is the view to read balances from: the account row plus its deltas.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "account_balance_deltas",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),  # fmt: skip
        sa.Column("account_number", sa.String(length=34), nullable=False),
        sa.Column("delta_minor", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_number"],
            ["accounts.number"],
            name=op.f("fk_account_balance_deltas_account_number_accounts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_balance_deltas")),
    )
    op.create_index(
        op.f("ix_account_balance_deltas_account_number"),
        "account_balance_deltas",
        ["account_number"],
    )
    # What an operator reads: each account's balance, deltas not yet folded included.
    op.execute(
        "CREATE VIEW account_balances AS SELECT a.number, a.bank_code, a.currency, "
        "a.balance_minor + coalesce((SELECT sum(d.delta_minor) FROM account_balance_deltas d "
        "WHERE d.account_number = a.number), 0) AS balance_minor FROM accounts a"
    )


def downgrade() -> None:
    op.execute("DROP VIEW account_balances")
    # Fold what is pending into the accounts first: their balances must survive.
    op.execute(
        "UPDATE accounts SET balance_minor = balance_minor + ("
        "SELECT coalesce(sum(d.delta_minor), 0) FROM account_balance_deltas d "
        "WHERE d.account_number = accounts.number)"
    )
    op.drop_index(op.f("ix_account_balance_deltas_account_number"), "account_balance_deltas")
    op.drop_table("account_balance_deltas")
