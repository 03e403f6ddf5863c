"""Switch-governed schemas: the writer schemas approved for decoding, first writer wins.

``approved_schemas`` holds each approved writer schema once by fingerprint and once by
identity; rows are never updated or deleted (triggers refuse both). The release's own
schemas are approved at start-up (``engine.ledger.schemas.approve_release_schemas``),
not here: a migration does not know which release runs it.

Revision ID: 0010
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

TABLE = "approved_schemas"
APPEND_ONLY_MESSAGE = "approved_schemas is append-only: approve a new version instead"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("fingerprint", sa.LargeBinary(length=8), nullable=False),
        sa.Column("identity", sa.String(length=64), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("schema_text", sa.Text(), nullable=False),
        sa.Column("origin", sa.String(length=10), nullable=False),
        sa.Column("approved_by", sa.String(length=64), nullable=False),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "origin IN ('release', 'operator')", name=op.f("ck_approved_schemas_origin")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approved_schemas")),
        sa.UniqueConstraint("fingerprint", name=op.f("uq_approved_schemas_fingerprint")),
        sa.UniqueConstraint("identity", name=op.f("uq_approved_schemas_identity")),
    )
    _make_append_only()


def downgrade() -> None:
    _drop_append_only_guard()
    op.drop_table(TABLE)


def _make_append_only() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {TABLE}_no_{verb.lower()} BEFORE {verb} ON {TABLE} "
                f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}'); END"
            )
        return
    op.execute(
        f"CREATE FUNCTION {TABLE}_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"BEGIN RAISE EXCEPTION '{APPEND_ONLY_MESSAGE}'; END $$"
    )
    op.execute(
        f"CREATE TRIGGER {TABLE}_append_only BEFORE UPDATE OR DELETE ON {TABLE} "
        f"FOR EACH ROW EXECUTE FUNCTION {TABLE}_append_only()"
    )


def _drop_append_only_guard() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_no_update")
        op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_no_delete")
        return
    op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_append_only ON {TABLE}")
    op.execute(f"DROP FUNCTION IF EXISTS {TABLE}_append_only()")
