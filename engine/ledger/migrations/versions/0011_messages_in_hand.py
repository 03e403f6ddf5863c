"""What each stage has in hand, per partition: a process that dies handling it is found.

``messages_in_hand`` holds one row per (consumer, topic, partition): the offsets a stage
instance is about to handle, written in a short transaction of its own before it
handles them and cleared by the transaction that commits them. Offsets still marked
when the partition is polled again mean a process died handling them
(``engine.pipeline.quarantine``).

Revision ID: 0011
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "messages_in_hand",
        sa.Column("consumer", sa.String(length=32), nullable=False),
        sa.Column("topic", sa.String(length=120), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("first_offset", sa.BigInteger(), nullable=True),
        sa.Column("last_offset", sa.BigInteger(), nullable=True),
        sa.Column("deaths", sa.Integer(), nullable=False),
        sa.Column("suspect_until", sa.BigInteger(), nullable=True),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("marked_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "(first_offset IS NULL AND last_offset IS NULL) OR first_offset <= last_offset",
            name=op.f("ck_messages_in_hand_range"),
        ),
        sa.CheckConstraint("deaths >= 0", name=op.f("ck_messages_in_hand_deaths")),
        sa.PrimaryKeyConstraint("consumer", "topic", "partition", name=op.f("pk_messages_in_hand")),
    )


def downgrade() -> None:
    op.drop_table("messages_in_hand")
