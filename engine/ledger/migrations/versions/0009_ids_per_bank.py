"""A bank's ids are its own: the ledger's id columns hold ``BANK:id``.

From this revision on, the switch keeps every id a bank supplies (event, payment, step)
in that bank's namespace, ``f"{bank}:{id}"`` (``engine.ids``), so each unique key on
them (``payments.payment_id``, ``payments.initiated_event_id``, ``payment_steps.step_id``,
``handled_events``) is per bank without a change of constraint. The columns widen from
64 characters to bank code + ``:`` + 64 (73). Existing ids are NOT rewritten: the hash
chain covers them, and an id without ``:`` never equals a qualified one, so they stay
valid as they are (the legacy namespace).

SQLite ignores VARCHAR lengths: nothing to do there. On PostgreSQL each column is
widened in place (no table copy, the triggers of 0001 and 0007 stay). The downgrade
narrows them again, and refuses (PostgreSQL) while an id longer than 64 characters is
stored rather than cut one.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

OLD_CHARS = 64
NEW_CHARS = 73  # engine.ids.SWITCH_ID_MAX_CHARS, as it was when this revision was written
ID_COLUMNS = (
    ("payments", "payment_id"),
    ("payments", "initiated_event_id"),
    ("holds", "payment_id"),
    ("holds", "resolved_by"),
    ("payment_steps", "step_id"),
    ("payment_steps", "payment_id"),
    ("payment_transitions", "payment_id"),
    ("payment_transitions", "event_id"),
    ("bank_references", "payment_id"),
    ("postings", "payment_id"),
    ("handled_events", "event_id"),
    ("handled_events", "payment_id"),
    ("emitted_events", "source_event_id"),
    ("emitted_events", "event_id"),
    ("emitted_events", "payment_id"),
    ("dead_letters", "payment_id"),
    ("notifications", "payment_id"),
    ("notifications", "source_event_id"),
    ("dead_letter_redrives", "payment_id"),
    ("dead_letter_redrives", "event_id"),
)


def _resize(chars_from: int, chars_to: int) -> None:
    if op.get_bind().dialect.name == "sqlite":
        return  # SQLite does not enforce VARCHAR lengths
    for table, column in ID_COLUMNS:
        op.alter_column(
            table, column, type_=sa.String(chars_to), existing_type=sa.String(chars_from)
        )


def upgrade() -> None:
    _resize(OLD_CHARS, NEW_CHARS)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        return  # nothing was widened; longer ids read back as they are
    for table, column in ID_COLUMNS:
        longer = bind.execute(
            sa.text(f"SELECT count(*) FROM {table} WHERE length({column}) > {OLD_CHARS}")
        ).scalar_one()
        if longer:
            raise RuntimeError(
                f"cannot downgrade below 0009: {table}.{column} holds {longer} ids longer "
                f"than {OLD_CHARS} characters (ids in a bank's namespace)"
            )
    _resize(NEW_CHARS, OLD_CHARS)
