"""A message that kills its consumer process is quarantined after MAX_DEATHS deaths alone.

A real consumer process (``python -m sakk run validator``) dies by SIGKILL each time it
reads the poisonous message (``SAKK_CRASH_ON_MESSAGE_CONTAINING``, a stand-in for a
segfault in the decoder); the test restarts it as a supervisor would. The message ends as
a ``poison`` dead letter naming its deaths, and another bank's genuine payment behind it
on the same partition settles.
"""

from __future__ import annotations

import contextlib
import subprocess
import time

import pytest
from sqlalchemy import select

from engine.ledger.models import DeadLetter, HandledEvent, MessagesInHand, Payment, table_of
from engine.pipeline.quarantine import MAX_DEATHS
from engine.supervisor import ConsumerProcess
from sakk.app import TOPOLOGY
from tests.factories import AMINA, KARIM, payment, switch_id

pytestmark = pytest.mark.integration

MARK = "POISON-7f3a"  # bytes the planted crash looks for, in the poisonous payment
QUARANTINE_TIMEOUT_S = 120.0
POLL_S = 0.2


def _quarantined_and_settled(flow, genuine_id: str) -> bool:
    with flow.engine.connect() as conn:
        dead = conn.execute(select(table_of(DeadLetter).c.kind)).scalars().all()
        state = conn.execute(
            select(table_of(Payment).c.state).where(table_of(Payment).c.payment_id == genuine_id)
        ).scalar()
    return "poison" in dead and state == "SETTLED"


def test_a_message_that_kills_its_consumer_is_quarantined_and_the_partition_goes_on(
    flow_factory, database_url, tmp_path
):
    flow = flow_factory(
        database_url,
        consumers=(),
        topic_partitions=1,  # the victim's payment is behind the poison on its partition
        session_timeout_ms=3_000,  # a killed member leaves the group within seconds
        heartbeat_interval_ms=1_000,
        crash_on_message_containing=MARK,
    )
    poison = payment(AMINA, KARIM, 1_000, remittance_info=f"pay {MARK}")
    genuine = payment(KARIM, AMINA, 2_500)  # another bank's payment, right behind it
    flow.publish([poison, genuine])

    validator = ConsumerProcess(
        "validator", 1, flow.settings, tmp_path / "validator.log", TOPOLOGY.command("validator")
    )
    settlement = ConsumerProcess(
        "settlement",
        1,
        flow.settings,
        tmp_path / "settlement.log",
        TOPOLOGY.command("settlement"),
    )
    validator.start()
    settlement.start()
    deaths: list[int | None] = []
    try:
        deadline = time.monotonic() + QUARANTINE_TIMEOUT_S
        while not _quarantined_and_settled(flow, switch_id(genuine)):
            if time.monotonic() > deadline:
                raise AssertionError(f"not quarantined within {QUARANTINE_TIMEOUT_S}s: {deaths}")
            if not validator.alive():
                deaths.append(validator.process.returncode if validator.process else None)
                if len(deaths) > MAX_DEATHS + 1:
                    raise AssertionError(f"the validator died {len(deaths)} times: {deaths}")
                validator.start()  # a supervisor restarting it
            with contextlib.suppress(subprocess.TimeoutExpired):  # wakes at once on a death
                validator.process.wait(timeout=POLL_S)  # type: ignore[union-attr]
        assert validator.alive() and settlement.alive()
    finally:
        codes = {"validator": validator.stop(), "settlement": settlement.stop()}
    assert codes == {"validator": 0, "settlement": 0}

    # MAX_DEATHS alone; one more when the first death held both messages in one batch.
    assert MAX_DEATHS <= len(deaths) <= MAX_DEATHS + 1 and set(deaths) == {-9}, deaths
    d, h, p = table_of(DeadLetter), table_of(HandledEvent), table_of(Payment)
    with flow.engine.connect() as conn:
        letters = conn.execute(select(d.c.kind, d.c.reason, d.c.source_offset)).all()
        assert [(kind, offset) for kind, _, offset in letters] == [("poison", 0)]
        assert f"{MAX_DEATHS} times" in letters[0].reason
        assert (
            conn.execute(select(p.c.payment_id).where(p.c.payment_id == switch_id(poison))).all()
            == []
        )  # never decoded, never recorded
        outcomes = (
            conn.execute(
                select(h.c.outcome).where(h.c.consumer == "validator").order_by(h.c.offset)
            )
            .scalars()
            .all()
        )
        # in = out + rejected + dead-lettered: two in, one validated, one dead-lettered.
        assert outcomes == ["dead_lettered", "validated"]
        hand = table_of(MessagesInHand)
        left = conn.execute(
            select(hand.c.first_offset, hand.c.suspect_until).where(hand.c.consumer == "validator")
        ).all()
        assert left == [(None, None)]  # nothing in hand, nothing suspect after a clean stop
