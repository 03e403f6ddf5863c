"""One hash chain per chain key: no single chain-head row for every append to wait on.

``ledger_entries`` gets ``chain_id`` (0 for every entry already written: they are
chain 0, whose hashes do not change) and ``chain_seq`` becomes unique per chain.
``ledger_chain_head`` is keyed by ``chain_id``: its single row (id 1) becomes chain
0's head. Window closes record every chain's head in ``settlement_window_chain_heads``;
each close already recorded is chain 0's head there. The append-only guard is lifted
for the rebuild of ``ledger_entries`` on SQLite only and put back before the migration
commits.

Downgrading is refused once any chain other than 0 has an entry: the single chain of
0004 cannot hold them without rewriting their hashes.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

APPEND_ONLY_MESSAGE = "ledger_entries is append-only: post a reversing entry instead"
GENESIS_HASH = "0" * 64
OLD_HEAD_ID = 1  # the single row of 0002's ledger_chain_head


def upgrade() -> None:
    _drop_append_only_guard_on_sqlite()
    with op.batch_alter_table("ledger_entries", schema=None, recreate=_recreate()) as batch_op:
        batch_op.add_column(
            sa.Column("chain_id", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
        batch_op.drop_constraint(op.f("uq_ledger_entries_chain_seq"), type_="unique")
        batch_op.create_unique_constraint(
            op.f("uq_ledger_entries_chain_id_chain_seq"), ["chain_id", "chain_seq"]
        )
    _make_entries_append_only_on_sqlite()

    heads = _read_heads("id")
    op.drop_table("ledger_chain_head")
    _create_heads_table(
        sa.Column("chain_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.CheckConstraint("chain_id >= 0", name=op.f("ck_ledger_chain_head_chain_id")),
        sa.PrimaryKeyConstraint("chain_id", name=op.f("pk_ledger_chain_head")),
    )
    old = heads.get(OLD_HEAD_ID)
    if old is not None:
        _insert_head("chain_id", 0, *old)

    op.create_table(
        "settlement_window_chain_heads",
        sa.Column("label", sa.String(length=32), nullable=False),
        sa.Column("chain_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("head_hash", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["label"], ["settlement_windows.label"],
            name=op.f("fk_settlement_window_chain_heads_label_settlement_windows"),
        ),
        sa.PrimaryKeyConstraint("label", "chain_id", name=op.f("pk_settlement_window_chain_heads")),
    )  # fmt: skip
    op.execute(
        "INSERT INTO settlement_window_chain_heads (label, chain_id, seq, head_hash) "
        "SELECT label, 0, chain_seq, chain_hash FROM settlement_windows"
    )


def downgrade() -> None:
    _refuse_if_other_chains_used()
    op.drop_table("settlement_window_chain_heads")

    heads = _read_heads("chain_id")
    op.drop_table("ledger_chain_head")
    _create_heads_table(
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_ledger_chain_head_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_chain_head")),
    )
    _insert_head("id", OLD_HEAD_ID, *heads.get(0, (0, GENESIS_HASH)))

    _drop_append_only_guard_on_sqlite()
    with op.batch_alter_table("ledger_entries", schema=None, recreate=_recreate()) as batch_op:
        batch_op.drop_constraint(op.f("uq_ledger_entries_chain_id_chain_seq"), type_="unique")
        batch_op.create_unique_constraint(op.f("uq_ledger_entries_chain_seq"), ["chain_seq"])
        batch_op.drop_column("chain_id")
    _make_entries_append_only_on_sqlite()


def _recreate() -> str:
    # SQLite cannot change a table's constraints in place: batch mode rebuilds it (and
    # drops its triggers). PostgreSQL alters in place, which keeps the id sequence.
    return "always" if op.get_bind().dialect.name == "sqlite" else "auto"


def _read_heads(key: str) -> dict[int, tuple[int, str]]:
    rows = op.get_bind().execute(sa.text(f"SELECT {key}, seq, head_hash FROM ledger_chain_head"))
    return {int(r[0]): (int(r[1]), str(r[2])) for r in rows}


def _create_heads_table(key: sa.Column, *constraints: sa.Constraint) -> None:
    op.create_table(
        "ledger_chain_head",
        key,
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("head_hash", sa.String(length=64), nullable=False),
        *constraints,
    )


def _insert_head(key: str, value: int, seq: int, head_hash: str) -> None:
    op.get_bind().execute(
        sa.text(f"INSERT INTO ledger_chain_head ({key}, seq, head_hash) VALUES (:k, :s, :h)"),
        {"k": value, "s": seq, "h": head_hash},
    )


def _refuse_if_other_chains_used() -> None:
    bind = op.get_bind()
    entries = bind.execute(
        sa.text("SELECT count(*) FROM ledger_entries WHERE chain_id <> 0")
    ).scalar_one()
    closes = bind.execute(
        sa.text(
            "SELECT count(DISTINCT label) FROM settlement_window_chain_heads"
            " WHERE chain_id <> 0 AND seq > 0"
        )
    ).scalar_one()
    if entries or closes:
        raise RuntimeError(
            f"cannot downgrade below 0005: {entries} entries and {closes} window closes are on "
            f"chains other than 0, which 0004's single chain cannot hold"
        )


def _make_entries_append_only_on_sqlite() -> None:
    """The guard of 0001, put back (batch mode on SQLite rebuilds the table without it)."""
    if op.get_bind().dialect.name != "sqlite":
        return
    for verb in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER ledger_entries_no_{verb.lower()} BEFORE {verb} ON ledger_entries "
            f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}'); END"
        )


def _drop_append_only_guard_on_sqlite() -> None:
    # PostgreSQL alters ledger_entries in place: its trigger stays, and fires on no row here.
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute("DROP TRIGGER IF EXISTS ledger_entries_no_update")
    op.execute("DROP TRIGGER IF EXISTS ledger_entries_no_delete")
