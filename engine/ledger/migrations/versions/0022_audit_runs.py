"""Audit runs: every ``audit verify``, ``replay`` and ``reconcile`` run, with its report.

``audit_runs`` keeps who ran what, when, over which range or options, its outcome (OK,
DIFFERENCES or FAILED), its counts and its report as JSON (cut to a bound,
``engine.audit.runs``). A row is written once, when the run ends: triggers refuse every
UPDATE and DELETE, as for ``operator_actions``.

Revision ID: 0022_audit_runs
Revises: 0020_proposals
"""

import sqlalchemy as sa
from alembic import op

revision = "0022_audit_runs"
down_revision = "0021_read_indexes"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TABLE = "audit_runs"
MESSAGE = "audit_runs is append-only: a run is recorded once, as it ended"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("via", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("options", sa.Text(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("differences", sa.BigInteger(), nullable=False),
        sa.Column("counts", sa.Text(), nullable=False),
        sa.Column("report", sa.Text(), nullable=True),
        sa.Column("report_chars", sa.BigInteger(), nullable=False),
        sa.Column("report_cut", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "kind IN ('verify', 'replay', 'reconcile')", name=op.f("ck_audit_runs_kind")
        ),
        sa.CheckConstraint(
            "outcome IN ('OK', 'DIFFERENCES', 'FAILED')", name=op.f("ck_audit_runs_outcome")
        ),
        sa.CheckConstraint("via IN ('cli', 'console')", name=op.f("ck_audit_runs_via")),
        sa.CheckConstraint("finished_at >= started_at", name=op.f("ck_audit_runs_times")),
        sa.CheckConstraint("differences >= 0", name=op.f("ck_audit_runs_differences")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_runs")),
    )
    op.create_index("ix_audit_runs_kind", TABLE, ["kind", "id"])
    _make_append_only()


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_no_update")
        op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_no_delete")
    else:
        op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_append_only ON {TABLE}")
        op.execute(f"DROP FUNCTION IF EXISTS {TABLE}_append_only()")
    op.drop_index("ix_audit_runs_kind", table_name=TABLE)
    op.drop_table(TABLE)


def _make_append_only() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {TABLE}_no_{verb.lower()} BEFORE {verb} ON {TABLE} "
                f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END"
            )
        return
    op.execute(
        f"CREATE FUNCTION {TABLE}_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"BEGIN RAISE EXCEPTION '{MESSAGE}'; END $$"
    )
    op.execute(
        f"CREATE TRIGGER {TABLE}_append_only BEFORE UPDATE OR DELETE ON {TABLE} "
        f"FOR EACH ROW EXECUTE FUNCTION {TABLE}_append_only()"
    )
