"""Durable notification delivery, operator redeliveries, dead-letter redrives.

Notifications get a persisted schedule (next attempt, horizon, dispatcher lease,
announcement of their PaymentNotified, redelivery round). Rows already PENDING are
scheduled now with the default 24 h horizon; finished rows count as announced, since
the old path emitted PaymentNotified in the same transaction that finished them.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
DEFAULT_HORIZON_S = 24 * 3600


def upgrade() -> None:
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True)))
        batch_op.add_column(sa.Column("deadline_at", sa.DateTime(timezone=True)))
        batch_op.add_column(sa.Column("claim_token", sa.String(length=36)))
        batch_op.add_column(sa.Column("announced_at", sa.DateTime(timezone=True)))
        batch_op.add_column(
            sa.Column("round", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
        batch_op.create_index(
            "ix_notifications_due", ["status", "recipient_bank", "next_attempt_at"], unique=False
        )
    _schedule_existing_rows()

    op.create_table(
        "notification_redeliveries",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("notification_id", sa.String(length=64), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("requested_by", sa.String(length=64), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["notifications.notification_id"],
            name=op.f("fk_notification_redeliveries_notification_id_notifications"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_redeliveries")),
        sa.UniqueConstraint(
            "notification_id",
            "round",
            name=op.f("uq_notification_redeliveries_notification_id_round"),
        ),
    )

    op.create_table(
        "dead_letter_redrives",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column(
            "dead_letter_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("requested_by", sa.String(length=64), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("body_source", sa.String(length=16), nullable=False),
        sa.Column("target_topic", sa.String(length=120), nullable=False),
        sa.Column("key", sa.LargeBinary(), nullable=True),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column("payment_id", sa.String(length=64), nullable=True),
        sa.Column("event_id", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("published_partition", sa.Integer(), nullable=True),
        sa.Column("published_offset", sa.BigInteger(), nullable=True),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["dead_letter_id"],
            ["dead_letters.id"],
            name=op.f("fk_dead_letter_redrives_dead_letter_id_dead_letters"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letter_redrives")),
        sa.UniqueConstraint("dead_letter_id", name=op.f("uq_dead_letter_redrives_dead_letter_id")),
    )
    with op.batch_alter_table("dead_letter_redrives", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_dead_letter_redrives_payment_id"), ["payment_id"], unique=False
        )


def downgrade() -> None:
    op.drop_table("dead_letter_redrives")
    op.drop_table("notification_redeliveries")
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_index("ix_notifications_due")
        batch_op.drop_column("round")
        batch_op.drop_column("announced_at")
        batch_op.drop_column("claim_token")
        batch_op.drop_column("deadline_at")
        batch_op.drop_column("next_attempt_at")


def _schedule_existing_rows() -> None:
    bind = op.get_bind()
    rows = bind.execute(
        sa.text("SELECT notification_id, created_at FROM notifications WHERE status = 'PENDING'")
    ).fetchall()
    notifications = sa.table(
        "notifications",
        sa.column("notification_id", sa.String),
        sa.column("next_attempt_at", sa.DateTime(timezone=True)),
        sa.column("deadline_at", sa.DateTime(timezone=True)),
    )
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    for notification_id, _created_at in rows:
        bind.execute(
            notifications.update()
            .where(notifications.c.notification_id == notification_id)
            .values(next_attempt_at=now, deadline_at=now + timedelta(seconds=DEFAULT_HORIZON_S))
        )
    bind.execute(
        sa.text(
            "UPDATE notifications SET announced_at = finished_at"
            " WHERE status <> 'PENDING' AND finished_at IS NOT NULL"
        )
    )
