"""The chaos harness's "ridden out" figures come from a live consumer's counters.

A validator whose database fails every batch retries, and counts each retry in
``sakk_database_retries_total``; the harness's watch reads it from the process's
metrics port, as it does during a chaos run (no log line is counted).
"""

from __future__ import annotations

import pytest
from sqlalchemy import text

from engine.ledger.database import make_engine
from engine.supervisor import ConsumerProcess
from sakk.app import TOPOLOGY
from tests.factories import payment
from tooling.chaos.scrape import CounterWatch

pytestmark = pytest.mark.integration

WAIT_S = 60.0


def test_a_consumer_s_database_retries_are_read_from_its_metrics(
    flow_factory, sqlite_url, tmp_path
):
    flow = flow_factory(
        sqlite_url, consumers=(), db_retry_max_attempts=600, db_retry_backoff_max_ms=200
    )
    engine = make_engine(flow.settings.ledger_url)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE messages_in_hand"))  # every batch of the validator fails
    engine.dispose()
    flow.publish([payment()])
    watch = CounterWatch(flow.settings.metrics_host)
    member = ConsumerProcess(
        "validator", 1, flow.settings, tmp_path / "validator.log", TOPOLOGY.command("validator")
    )
    member.start(watch.port_of("validator-1"))
    assert member.process is not None
    pid = member.process.pid

    def retried_twice_or_died() -> bool:
        if not member.alive():
            return True  # the assertion below shows its log
        watch.read("validator-1", pid)
        return watch.totals()["database retries"] >= 2

    try:
        flow.wait_until(retried_twice_or_died, WAIT_S)
    finally:
        member.stop()

    assert watch.totals()["database retries"] >= 2, (tmp_path / "validator.log").read_text()[-2000:]
