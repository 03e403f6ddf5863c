"""The ledger's transition trigger (migration 0007) and the catalog's state machine agree.

The migration holds a copy of the machine, as migrations must (they never import the
code of later revisions); this test reads the trigger the migrations installed and
tries every change of state against it, on both databases.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from itertools import product

import pytest
from sqlalchemy import Connection, insert, text, update

from engine.domain import ALLOWED
from engine.domain import PaymentState as S
from engine.ledger.database import make_engine, upgrade
from engine.ledger.models import Payment, table_of

pytestmark = pytest.mark.integration

PAIR = re.compile(r"'([A-Z]+)>([A-Z]+)'")
TRIGGER_SOURCE = {
    "sqlite": "SELECT sql FROM sqlite_master WHERE type = 'trigger' "
    "AND name = 'payments_state_transition'",
    "postgresql": "SELECT prosrc FROM pg_proc WHERE proname = 'payments_state_transition'",
}
CHANGES = {(str(s), str(t)) for s, targets in ALLOWED.items() if s is not None for t in targets}


def _payment_in(conn: Connection, state: S) -> str:
    payment_id = f"p-{state.lower()}"
    conn.execute(insert(table_of(Payment)).values(
        payment_id=payment_id, initiated_event_id=f"e-{payment_id}", bank_reference=payment_id,
        payer_bank="007", payer_account="A1", payee_bank="011", payee_account="B1",
        amount_minor=1_000, currency="MAD", channel="WEB", payment_type="TRANSFER",
        occurred_at=datetime(2026, 12, 1, tzinfo=UTC), state=state,
    ))  # fmt: skip
    return payment_id


def _accepted(conn: Connection, payment_id: str, target: S) -> bool:
    savepoint = conn.begin_nested()
    try:
        p = table_of(Payment)
        conn.execute(update(p).where(p.c.payment_id == payment_id).values(state=target))
    except Exception:  # noqa: BLE001 - the trigger's refusal, whatever the driver calls it
        savepoint.rollback()
        return False
    savepoint.rollback()  # leave the payment where it was for the next target
    return True


def test_the_trigger_lists_exactly_the_catalogs_changes_of_state(database_url: str) -> None:
    upgrade(database_url)
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            source = conn.execute(text(TRIGGER_SOURCE[engine.dialect.name])).scalar_one()
    finally:
        engine.dispose()
    assert set(PAIR.findall(source)) == CHANGES


def test_the_trigger_accepts_exactly_the_catalogs_changes_of_state(database_url: str) -> None:
    upgrade(database_url)
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn, conn.begin():
            payments = {state: _payment_in(conn, state) for state in S}
            accepted = {
                (str(s), str(t))
                for s, t in product(S, S)
                if s != t and _accepted(conn, payments[s], t)
            }
    finally:
        engine.dispose()
    assert accepted == CHANGES
