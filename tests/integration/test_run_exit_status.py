"""``sakk run`` exits non-zero when a stage dies, so a supervisor restarting on failure does.

A stage dies when an error escapes its loop; here the validator's database stays
unavailable for it beyond its retries (its in-hand table is gone). The other stages of
``sakk run all`` stop after their batch in hand, and the process exits 1.
"""

from __future__ import annotations

import subprocess

import pytest
from sqlalchemy import text

from engine.ledger.database import make_engine
from engine.supervisor import ConsumerProcess
from sakk.app import TOPOLOGY
from tests.factories import payment

pytestmark = pytest.mark.integration

EXIT_TIMEOUT_S = 60.0


@pytest.mark.parametrize("consumer", ["all", "validator"])
def test_a_stage_that_dies_makes_sakk_run_exit_non_zero(
    flow_factory, sqlite_url, tmp_path, consumer
):
    flow = flow_factory(
        sqlite_url, consumers=(), db_retry_max_attempts=2, db_retry_backoff_max_ms=10
    )
    engine = make_engine(flow.settings.ledger_url)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE messages_in_hand"))  # the validator's next batch fails
    engine.dispose()
    flow.publish([payment()])
    member = ConsumerProcess(
        consumer, 1, flow.settings, tmp_path / f"{consumer}.log", [*TOPOLOGY.launcher, consumer]
    )
    member.start()
    assert member.process is not None
    try:
        code = member.process.wait(timeout=EXIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        member.stop()
        raise AssertionError(f"sakk run {consumer} did not exit when its validator died") from None
    output = (tmp_path / f"{consumer}.log").read_text()
    assert code == 1, output[-2000:]
    assert "stopped because a stage died: validator" in output
    assert "did not stop within" not in output  # the other stages stopped cleanly first
