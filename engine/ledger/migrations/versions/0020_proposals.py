"""Four eyes: operator actions proposed by one operator, approved by another.

``operator_proposals`` holds each proposal: the action's request as JSON, what it would
change when proposed, who proposed it, when it expires, and its decision. A row moves
once, from PENDING to APPROVED, REFUSED, EXPIRED or FAILED; triggers refuse any other
change (a decided row is final; a request is never rewritten) and every DELETE.

Revision ID: 0020_proposals
Revises: 0019_console_auth
"""

import sqlalchemy as sa
from alembic import op

revision = "0020_proposals"
down_revision = "0019_console_auth"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TABLE = "operator_proposals"
STATES = "'PENDING', 'APPROVED', 'REFUSED', 'EXPIRED', 'FAILED'"
DECIDED = "'APPROVED', 'REFUSED', 'EXPIRED', 'FAILED'"
MESSAGE = "operator_proposals: only a PENDING proposal is decided, once; a request never changes"
# What a decision may not touch: the proposal as it was made.
FIXED = ("action", "target", "request", "request_sha256", "preview_old", "preview_new",
         "proposed_by", "proposed_at", "expires_at", "reason", "proposal_seq")  # fmt: skip


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=False),
        sa.Column("request", sa.Text(), nullable=False),
        sa.Column("request_sha256", sa.String(length=64), nullable=False),
        sa.Column("preview_old", sa.Text(), nullable=True),
        sa.Column("preview_new", sa.Text(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("proposed_by", sa.String(length=64), nullable=False),
        sa.Column("proposed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("proposal_seq", BIG_ID, nullable=False),
        sa.Column("decided_by", sa.String(length=64), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decision_reason", sa.Text(), nullable=True),
        sa.Column("decision_seq", BIG_ID, nullable=True),
        sa.Column("action_seq", BIG_ID, nullable=True),
        sa.CheckConstraint(f"state IN ({STATES})", name=op.f("ck_operator_proposals_state")),
        sa.CheckConstraint("expires_at > proposed_at", name=op.f("ck_operator_proposals_expiry")),
        sa.CheckConstraint(
            "state <> 'APPROVED' OR decided_by <> proposed_by",
            name=op.f("ck_operator_proposals_four_eyes"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operator_proposals")),
    )
    op.create_index("ix_operator_proposals_state", TABLE, ["state", "id"])
    _guard()


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_decided_once")
        op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_no_delete")
    else:
        op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_guard ON {TABLE}")
        op.execute(f"DROP FUNCTION IF EXISTS {TABLE}_guard()")
    op.drop_index("ix_operator_proposals_state", table_name=TABLE)
    op.drop_table(TABLE)


def _guard() -> None:
    changed = " OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in FIXED)
    refused = f"OLD.state <> 'PENDING' OR NEW.state NOT IN ({DECIDED}) OR {changed}"
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            f"CREATE TRIGGER {TABLE}_decided_once BEFORE UPDATE ON {TABLE} "
            f"WHEN {refused} BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END"
        )
        op.execute(
            f"CREATE TRIGGER {TABLE}_no_delete BEFORE DELETE ON {TABLE} "
            f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END"
        )
        return
    pg_changed = " OR ".join(f"NEW.{c} IS DISTINCT FROM OLD.{c}" for c in FIXED)
    pg_refused = f"OLD.state <> 'PENDING' OR NEW.state NOT IN ({DECIDED}) OR {pg_changed}"
    op.execute(
        f"CREATE FUNCTION {TABLE}_guard() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF TG_OP = 'DELETE' OR {pg_refused} THEN RAISE EXCEPTION '{MESSAGE}'; END IF; "
        f"RETURN NEW; END $$"
    )
    op.execute(
        f"CREATE TRIGGER {TABLE}_guard BEFORE UPDATE OR DELETE ON {TABLE} "
        f"FOR EACH ROW EXECUTE FUNCTION {TABLE}_guard()"
    )
