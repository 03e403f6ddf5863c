"""The position journal through the embedded broker: ``sakk audit verify`` walks it.

Bank 007's cap is set by an operator action and funded; its payments up to exactly its
cap settle, the next is refused. The journal then holds each change of its position row
in write order, and ``sakk audit verify`` proves none went beyond the cap in force when
it was decided. A position row moved without its journal row, or a cap raised behind the
operator's back that let a payment through, is named; the journal refuses to be edited.
A batch in flight when the operator lowers the cap is judged by the cap it read.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError

from engine.audit.position_journal import check_journal
from engine.ledger.models import BankLimit, BankPosition, Payment, PositionChange, table_of
from engine.ops.action import Actor, run_action
from engine.ops.limits import SetBankLimit
from tests.factories import AMINA, KARIM, YOUSSEF, payment
from tests.integration.test_liquidity_flow import sakk
from tests.integration.test_positions import Switch

pytestmark = pytest.mark.integration


def _states(flow: Any) -> list[str]:
    with flow.engine.connect() as conn:
        return sorted(r.state for r in conn.execute(select(Payment.__table__.c.state)))


def _capped_to_exactly_the_cap(flow: Any, tmp_path: Path) -> None:
    capped = sakk(flow, tmp_path, "liquidity", "cap", "--bank", "007", "--cap", "500.00",
                  "--alert-percent", "90", "--by", "amal", "--reason", "test")  # fmt: skip
    assert capped.exit_code == 0, capped.output
    funded = sakk(flow, tmp_path, "liquidity", "fund", "--bank", "007", "--amount", "600.00",
                  "--wait", "60", "--json")  # fmt: skip
    assert funded.exit_code == 0, funded.output
    flow.publish([payment(AMINA, KARIM, 30_000)])
    flow.wait_until(lambda: _states(flow) == ["SETTLED"])
    flow.publish([payment(YOUSSEF, KARIM, 20_000)])  # exactly at the cap
    flow.wait_until(lambda: _states(flow) == ["SETTLED", "SETTLED"])
    flow.publish([payment(AMINA, KARIM, 1)])  # one minor unit more
    flow.wait_until(lambda: _states(flow) == ["FAILED", "SETTLED", "SETTLED"])


def _verify(flow: Any, tmp_path: Path) -> tuple[int, dict[str, Any]]:
    result = sakk(flow, tmp_path, "audit", "verify", "--format", "json")
    return result.exit_code, json.loads(result.output)


def test_payments_to_exactly_the_cap_then_one_refused_verify_clean(
    flow_factory: Callable[..., Any], database_url: str, tmp_path: Path
) -> None:
    flow = flow_factory(database_url)
    _capped_to_exactly_the_cap(flow, tmp_path)

    code, found = _verify(flow, tmp_path)
    assert code == 0, found
    summary = found["summary"]
    assert (summary["cap_violations"], summary["journal_problems"]) == (0, 0)
    assert summary["caps_from_operator"] == 1  # the operator's cap, matched to its action
    assert summary["position_changes_checked"] >= 2  # the two payments out of bank 007

    t = table_of(PositionChange)
    with flow.engine.connect() as conn:
        rows = conn.execute(
            select(t.c.cause, t.c.refs, t.c.cap_minor, t.c.exposure_after_minor)
            .where(t.c.bank_code == "007", t.c.currency == "MAD")
            .order_by(t.c.id)
        ).all()
    paid = [r for r in rows if r.cause == "PAYMENTS"]
    assert [(r.cap_minor, r.exposure_after_minor) for r in paid] == [(50_000, 30_000),
                                                                     (50_000, 50_000)]  # fmt: skip
    assert all(len(json.loads(r.refs)) == 1 for r in paid)  # each names its payment
    assert [r.cause for r in rows if r.cause != "PAYMENTS"][-2:] == ["LIMITS", "FUNDS_IN"]


def test_a_row_moved_without_its_journal_row_or_a_cap_raised_behind_the_log_is_named(
    flow_factory: Callable[..., Any], database_url: str, tmp_path: Path
) -> None:
    flow = flow_factory(database_url)
    _capped_to_exactly_the_cap(flow, tmp_path)
    bl, t = table_of(BankLimit), table_of(PositionChange)
    with flow.engine.begin() as conn:  # the cap raised without an operator action
        conn.execute(update(bl).where(bl.c.bank_code == "007").values(net_debit_cap_minor=60_000))
    flow.publish([payment(YOUSSEF, KARIM, 10_000)])  # beyond the cap the operator set
    flow.wait_until(lambda: _states(flow).count("SETTLED") == 3)

    code, found = _verify(flow, tmp_path)
    assert code == 1
    (violation,) = found["cap_violations"]
    assert "bank 007 MAD" in violation["violation"]
    assert (
        "took its exposure to 600.00 MAD, over its net debit cap of 500.00 MAD"
        in (violation["violation"])
    )
    problems = [p["problem"] for p in found["journal_problems"]]
    assert any("checked a cap of 600.00 MAD, the cap in force when it was decided was "
               "500.00 MAD" in p for p in problems), problems  # fmt: skip

    bp = table_of(BankPosition)
    with flow.engine.begin() as conn:  # a movement of the row without its journal row
        conn.execute(
            update(bp).where(bp.c.bank_code == "011").values(posted_minor=bp.c.posted_minor + 1)
        )
    code, found = _verify(flow, tmp_path)
    problems = [p["problem"] for p in found["journal_problems"]]
    assert code == 1
    assert any(p.startswith("bank 011 MAD: position row (") for p in problems), problems

    with pytest.raises(DBAPIError), flow.engine.begin() as conn:  # the journal is append-only
        conn.execute(update(t).where(t.c.bank_code == "007").values(cap_minor=60_000))


def test_a_batch_in_flight_when_the_cap_is_lowered_is_judged_by_the_cap_it_read(
    database_url: str, tmp_path: Path
) -> None:
    switch = Switch(database_url, tmp_path)  # its cap written directly: the operator's next
    cap = partial(run_action, switch.engine, actor=Actor("amal"), at=datetime.now(UTC))
    cap(SetBankLimit("007", "MAD", 40_000, 90))
    first = switch.instance()
    decoded, _ = first._decode(switch.validated((30_000, AMINA)), None)
    in_flight = first._plan(decoded, [])  # read the row under the 400.00 cap
    cap(SetBankLimit("007", "MAD", 10_000, 90))  # lowered below what the batch will send
    first._commit(in_flight)  # its guard checks the cap it read: within it
    switch.settle(switch.validated((1, YOUSSEF)))  # decided under the lowered cap: refused

    assert sorted(switch.states()) == [("FAILED", "AM23"), ("SETTLED", None)]
    with switch.engine.connect() as conn:
        found = check_journal(conn)
    assert (found.violations, found.problems, found.caps_operator) == ([], [], 2)
    assert found.checked == 1  # the payment that raised bank 007's exposure
    t = table_of(PositionChange)
    with switch.engine.connect() as conn:
        rows = conn.execute(
            select(t.c.cause, t.c.cap_minor).where(t.c.bank_code == "007").order_by(t.c.id)
        ).all()
    assert [tuple(r) for r in rows][-3:] == [
        ("LIMITS", 40_000), ("LIMITS", 10_000), ("PAYMENTS", 40_000),
    ]  # written after the lower cap, checked against the cap its snapshot read  # fmt: skip
