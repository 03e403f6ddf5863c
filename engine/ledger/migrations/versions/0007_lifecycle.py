"""The lifecycle: holds, steps, several postings per payment, transitions checked in the database.

- ``payments`` gains ``intent`` (SALE or AUTHORIZATION), ``captured_minor`` (settled
  payments: their amount) and ``refunded_minor``.
- ``holds``: what an authorization reserves on its payer's account until it is resolved.
- ``channel_limits.hold_expiry_s``: how long a hold lives on a channel.
- ``payment_steps``: every capture, void, expiry, refund and return asked, applied or
  refused.
- ``postings.payment_id`` is no longer unique: a payment's captures, refunds and return
  are postings of their own.
- ``notifications`` loses its unique (payment, outcome, bank): a payment's steps are told
  one by one, and the primary key, derived from what is told to whom, still forbids a
  second notification of the same thing.
- A trigger refuses any change of ``payments.state`` that the state machine does not
  allow (``engine.domain.machine``), whoever makes it.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# The state machine (engine.domain.machine.ALLOWED) as it stands at this revision: a migration
# never imports it; tests/integration/test_state_machine_trigger.py proves the two agree.
TRANSITIONS = (
    ("VALIDATED", "SETTLED"),
    ("VALIDATED", "FAILED"),
    ("VALIDATED", "AUTHORIZED"),
    ("AUTHORIZED", "CAPTURED"),
    ("AUTHORIZED", "VOIDED"),
    ("AUTHORIZED", "EXPIRED"),
    ("SETTLED", "REFUNDED"),
    ("SETTLED", "RETURNED"),
    ("CAPTURED", "REFUNDED"),
)
_PAIRS = ", ".join(f"'{a}>{b}'" for a, b in TRANSITIONS)
_REFUSED = "illegal payment transition"


def upgrade() -> None:
    with op.batch_alter_table("payments") as batch_op:
        batch_op.add_column(
            sa.Column("intent", sa.String(13), server_default=sa.text("'SALE'"), nullable=False)
        )
        batch_op.add_column(sa.Column("captured_minor", sa.BigInteger(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "refunded_minor", sa.BigInteger(), server_default=sa.text("0"), nullable=False
            )
        )
    op.execute("UPDATE payments SET captured_minor = amount_minor WHERE state = 'SETTLED'")
    with op.batch_alter_table("channel_limits") as batch_op:
        batch_op.add_column(sa.Column("hold_expiry_s", sa.Integer(), nullable=True))

    with op.batch_alter_table("postings") as batch_op:
        batch_op.drop_constraint("uq_postings_payment_id", type_="unique")
        batch_op.create_index("ix_postings_payment_id", ["payment_id"])
    with op.batch_alter_table("notifications") as batch_op:
        batch_op.drop_constraint(
            "uq_notifications_payment_id_outcome_recipient_bank", type_="unique"
        )

    op.create_table(
        "holds",
        sa.Column("payment_id", sa.String(64), nullable=False),
        sa.Column("account_number", sa.String(34), nullable=False),
        sa.Column("bank_code", sa.String(8), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("fee_minor", sa.BigInteger(), nullable=False),
        sa.Column("reserved_minor", sa.BigInteger(), nullable=False),
        sa.Column("captured_minor", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_by", sa.String(64), nullable=True),
        sa.CheckConstraint(
            "captured_minor >= 0 AND captured_minor <= amount_minor AND reserved_minor >= 0",
            name=op.f("ck_holds_amounts"),
        ),
        sa.CheckConstraint(
            "state = 'ACTIVE' OR reserved_minor = 0", name=op.f("ck_holds_released")
        ),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.payment_id"], name=op.f("fk_holds_payment_id_payments")
        ),
        sa.PrimaryKeyConstraint("payment_id", name=op.f("pk_holds")),
    )
    op.create_index("ix_holds_active", "holds", ["account_number", "state"])
    op.create_index("ix_holds_expiry", "holds", ["state", "expires_at"])

    op.create_table(
        "payment_steps",
        sa.Column("step_id", sa.String(64), nullable=False),
        sa.Column("payment_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("sender_bank", sa.String(8), nullable=False),
        sa.Column("bank_reference", sa.String(35), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=True),
        sa.Column("fee_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=True),
        sa.Column("outcome", sa.String(8), nullable=False),
        sa.Column("reason_code", sa.String(4), nullable=True),
        sa.Column("reason_message", sa.String(300), nullable=True),
        sa.Column("posting_id", sa.String(64), nullable=True),
        sa.Column("settlement_window", sa.String(32), nullable=True),
        sa.PrimaryKeyConstraint("step_id", name=op.f("pk_payment_steps")),
    )
    op.create_index("ix_payment_steps_payment_id", "payment_steps", ["payment_id"])

    _create_transition_trigger()


def _create_transition_trigger() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "CREATE TRIGGER payments_state_transition BEFORE UPDATE OF state ON payments "
            f"WHEN NEW.state <> OLD.state AND OLD.state || '>' || NEW.state NOT IN ({_PAIRS}) "
            f"BEGIN SELECT RAISE(ABORT, '{_REFUSED}'); END"
        )
        return
    op.execute(
        "CREATE FUNCTION payments_state_transition() RETURNS trigger AS $$ BEGIN "
        f"IF NEW.state <> OLD.state AND OLD.state || '>' || NEW.state NOT IN ({_PAIRS}) THEN "
        f"RAISE EXCEPTION '{_REFUSED} % -> %', OLD.state, NEW.state "
        "USING ERRCODE = 'check_violation'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql"
    )
    op.execute(
        "CREATE TRIGGER payments_state_transition BEFORE UPDATE OF state ON payments "
        "FOR EACH ROW EXECUTE FUNCTION payments_state_transition()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS payments_state_transition")
    else:
        op.execute("DROP TRIGGER IF EXISTS payments_state_transition ON payments")
        op.execute("DROP FUNCTION IF EXISTS payments_state_transition()")
    op.drop_index("ix_payment_steps_payment_id", table_name="payment_steps")
    op.drop_table("payment_steps")
    op.drop_index("ix_holds_expiry", table_name="holds")
    op.drop_index("ix_holds_active", table_name="holds")
    op.drop_table("holds")
    with op.batch_alter_table("notifications") as batch_op:
        batch_op.create_unique_constraint(
            "uq_notifications_payment_id_outcome_recipient_bank",
            ["payment_id", "outcome", "recipient_bank"],
        )
    with op.batch_alter_table("postings") as batch_op:
        batch_op.drop_index("ix_postings_payment_id")
        batch_op.create_unique_constraint("uq_postings_payment_id", ["payment_id"])
    with op.batch_alter_table("channel_limits") as batch_op:
        batch_op.drop_column("hold_expiry_s")
    with op.batch_alter_table("payments") as batch_op:
        batch_op.drop_column("refunded_minor")
        batch_op.drop_column("captured_minor")
        batch_op.drop_column("intent")
