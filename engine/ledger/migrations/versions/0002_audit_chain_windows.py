"""Auditing: hash chain over ledger entries, closed settlement windows, replay runs.

Entries already in the ledger are chained in ``id`` order; the append-only guard
is lifted for that backfill only and put back before the migration commits.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from engine.ledger.postings import GENESIS_HASH, entry_hash

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

APPEND_ONLY_MESSAGE = "ledger_entries is append-only: post a reversing entry instead"
BACKFILL_CHUNK = 5_000


def upgrade() -> None:
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("chain_seq", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("prev_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("entry_hash", sa.String(length=64), nullable=True))
    op.create_table(
        "ledger_chain_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("head_hash", sa.String(length=64), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_ledger_chain_head_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_chain_head")),
    )
    _drop_append_only_guard()
    seq, head = _backfill_chain()
    with op.batch_alter_table("ledger_entries", schema=None, recreate=_recreate()) as batch_op:
        batch_op.alter_column("chain_seq", existing_type=sa.BigInteger(), nullable=False)
        batch_op.alter_column("prev_hash", existing_type=sa.String(length=64), nullable=False)
        batch_op.alter_column("entry_hash", existing_type=sa.String(length=64), nullable=False)
        batch_op.create_unique_constraint(op.f("uq_ledger_entries_chain_seq"), ["chain_seq"])
    _make_entries_append_only()
    op.get_bind().execute(
        sa.text("INSERT INTO ledger_chain_head (id, seq, head_hash) VALUES (1, :seq, :hash)"),
        {"seq": seq, "hash": head},
    )

    op.create_table(
        "settlement_windows",
        sa.Column("label", sa.String(length=32), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_hours", sa.Integer(), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("chain_seq", sa.BigInteger(), nullable=False),
        sa.Column("chain_hash", sa.String(length=64), nullable=False),
        sa.Column("postings", sa.BigInteger(), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("label", name=op.f("pk_settlement_windows")),
    )
    op.create_table(
        "settlement_window_positions",
        sa.Column("label", sa.String(length=32), nullable=False),
        sa.Column("bank_code", sa.String(length=8), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("gross_debits_minor", sa.BigInteger(), nullable=False),
        sa.Column("gross_credits_minor", sa.BigInteger(), nullable=False),
        sa.Column("net_minor", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["label"], ["settlement_windows.label"],
            name=op.f("fk_settlement_window_positions_label_settlement_windows"),
        ),
        sa.PrimaryKeyConstraint(
            "label", "bank_code", "currency", name=op.f("pk_settlement_window_positions")
        ),
    )  # fmt: skip
    op.create_table(
        "replay_runs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True,
                  nullable=False),
        sa.Column("topic", sa.String(length=120), nullable=False),
        sa.Column("selection", sa.String(length=16), nullable=False),
        sa.Column("from_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("to_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ranges", sa.Text(), nullable=False),
        sa.Column("reference_file", sa.String(length=500), nullable=False),
        sa.Column("reference_sha256", sa.String(length=64), nullable=False),
        sa.Column("events_read", sa.BigInteger(), nullable=False),
        sa.Column("events_replayed", sa.BigInteger(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_replay_runs")),
    )  # fmt: skip


def downgrade() -> None:
    op.drop_table("replay_runs")
    op.drop_table("settlement_window_positions")
    op.drop_table("settlement_windows")
    op.drop_table("ledger_chain_head")
    _drop_append_only_guard()
    with op.batch_alter_table("ledger_entries", schema=None, recreate=_recreate()) as batch_op:
        batch_op.drop_constraint(op.f("uq_ledger_entries_chain_seq"), type_="unique")
        batch_op.drop_column("entry_hash")
        batch_op.drop_column("prev_hash")
        batch_op.drop_column("chain_seq")
    _make_entries_append_only()


def _recreate() -> str:
    # SQLite cannot ALTER a column to NOT NULL: batch mode rebuilds the table (and drops
    # its triggers). PostgreSQL alters in place, which keeps the id sequence.
    return "always" if op.get_bind().dialect.name == "sqlite" else "auto"


def _backfill_chain() -> tuple[int, str]:
    """Chain the entries already written, in id order; returns the chain head."""
    bind = op.get_bind()
    seq, prev, last_id = 0, GENESIS_HASH, None
    while True:
        query = (
            "SELECT e.id, e.posting_id, p.payment_id, p.kind, p.occurred_at, p.settlement_window,"
            " e.account_number, e.amount_minor, e.currency"
            " FROM ledger_entries e JOIN postings p ON p.posting_id = e.posting_id"
            + ("" if last_id is None else " WHERE e.id > :last")
            + " ORDER BY e.id LIMIT :limit"
        )
        params = {"limit": BACKFILL_CHUNK} | ({} if last_id is None else {"last": last_id})
        rows = bind.execute(
            sa.text(query).columns(occurred_at=sa.DateTime(timezone=True)), params
        ).all()
        if not rows:
            return seq, prev
        updates = []
        for r in rows:
            seq += 1
            digest = entry_hash(
                prev,
                seq,
                r.posting_id,
                r.payment_id,
                r.kind,
                r.occurred_at,
                r.settlement_window,
                r.account_number,
                int(r.amount_minor),
                r.currency,
            )
            updates.append({"id_": r.id, "seq": seq, "prev": prev, "hash": digest})
            prev = digest
        bind.execute(
            sa.text(
                "UPDATE ledger_entries SET chain_seq = :seq, prev_hash = :prev,"
                " entry_hash = :hash WHERE id = :id_"
            ),
            updates,
        )
        last_id = rows[-1].id


def _make_entries_append_only() -> None:
    """The guard of 0001, put back (batch mode on SQLite rebuilds the table without it)."""
    if op.get_bind().dialect.name == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER ledger_entries_no_{verb.lower()} BEFORE {verb} ON ledger_entries "
                f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}'); END"
            )
        return
    op.execute(
        "CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries "
        "FOR EACH ROW EXECUTE FUNCTION ledger_entries_append_only()"
    )


def _drop_append_only_guard() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS ledger_entries_no_update")
        op.execute("DROP TRIGGER IF EXISTS ledger_entries_no_delete")
        return
    # The function stays: 0001 owns it, the trigger is recreated on it.
    op.execute("DROP TRIGGER IF EXISTS ledger_entries_append_only ON ledger_entries")
