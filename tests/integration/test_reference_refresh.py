"""A fee changed while the stages run is charged from its effective time on, without a restart,
and a replay of the topic charges every payment as the live run did."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from engine.audit.replay import ReplayRequest, replay
from engine.ledger.database import make_engine
from engine.ledger.models import Payment
from engine.ops.action import Actor, run_action
from engine.ops.reference import SetFee
from sakk.app import TOPOLOGY
from tests.factories import AMINA, KARIM, REFERENCE_FILE, payment, switch_id
from tests.integration.test_audit_replay import replay_url as replay_target  # noqa: F401
from tests.integration.test_audit_replay import snapshot
from tests.integration.test_flow import drained

pytestmark = pytest.mark.integration

# A change takes effect NOTICE_S after it is announced: more than the skew an event may
# have plus two refresh intervals (checked at start).
REFRESH_MS, SKEW_S, NOTICE_S = 500, 1, 3


def fees(engine, payment_ids: list[str]) -> list[int | None]:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        found = dict(conn.execute(select(Payment.payment_id, Payment.fee_minor)).all())
    return [found.get(p) for p in payment_ids]


def test_a_fee_changed_while_running_is_charged_from_its_time_and_replays_the_same(
    flow_factory,
    database_url,
    replay_target,  # noqa: F811  (the replay test's fixture: an empty ledger of the same kind)
):
    flow = flow_factory(
        database_url, reference_refresh_ms=REFRESH_MS, max_event_skew_s=SKEW_S,
        reference_notice_s=NOTICE_S,
    )  # fmt: skip
    before = [payment(AMINA, KARIM, 10_000) for _ in range(3)]
    flow.publish(before)
    flow.wait_until(lambda: drained(flow, len(before)))

    rule = {"fixed_minor": 700, "rate_bps": 0, "max_minor": None}
    change = SetFee("WEB", "TRANSFER", "MAD", rule, NOTICE_S, REFRESH_MS / 1000)
    done = run_action(flow.engine, change, Actor("ops-amal"), datetime.now(UTC))
    effective = done.result.effective_from
    flow.wait_until(lambda: datetime.now(UTC) >= effective + timedelta(seconds=1), NOTICE_S + 10)

    after = [payment(AMINA, KARIM, 10_000, occurred_at=datetime.now(UTC)) for _ in range(3)]
    flow.publish(after)
    published = len(before) + len(after)
    flow.wait_until(lambda: drained(flow, published))

    live_ids = [switch_id(p) for p in before + after]
    assert fees(flow.engine, live_ids) == [500] * 3 + [700] * 3

    target = replay_target
    report = replay(flow.settings, ReplayRequest(REFERENCE_FILE, target), TOPOLOGY)
    assert report.events_replayed == published
    replayed = make_engine(target)
    try:
        assert fees(replayed, live_ids) == [500] * 3 + [700] * 3
        live, again = snapshot(flow.engine), snapshot(replayed)
        assert again["payments"] == live["payments"]
        assert again["legs"] == live["legs"]
        assert again["balances"] == live["balances"]
    finally:
        replayed.dispose()
