"""A consumer process honours SIGTERM from its first instant: exit 0, never death by signal.

The chaos harness once caught a settlement process that was restarted just before the
final SIGTERM and died of Python's default action (-15) while it was still importing.
"""

from __future__ import annotations

import time

import pytest

from engine.kafka.client import create_topics
from engine.ledger.database import upgrade
from engine.supervisor import ConsumerProcess
from sakk.app import TOPOLOGY

pytestmark = pytest.mark.integration

# From "still in the interpreter's start-up" through "imports" to "connected and polling".
SIGTERM_AFTER_S = (0.0, 0.01, 0.05, 0.2, 0.6, 2.0)


@pytest.mark.parametrize("stage", ["settlement", "notification"])
def test_sigterm_at_any_instant_of_start_up_exits_zero(
    broker, settings_factory, sqlite_url, stage, tmp_path
):
    settings = settings_factory(broker.bootstrap_servers, sqlite_url)
    create_topics(settings)
    upgrade(settings.ledger_url)
    codes = {}
    for i, after_s in enumerate(SIGTERM_AFTER_S):
        member = ConsumerProcess(
            stage, i, settings, tmp_path / f"{stage}-{i}.log", TOPOLOGY.command(stage)
        )
        member.start()
        time.sleep(after_s)  # the instant of the signal is the variable under test
        codes[after_s] = member.stop(timeout_s=30)
    assert codes == dict.fromkeys(SIGTERM_AFTER_S, 0), {k: v for k, v in codes.items() if v != 0}
