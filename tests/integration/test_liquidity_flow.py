"""A bank's liquidity and cap through the embedded broker: the commands, settlement, positions.

``sakk liquidity fund`` deposits what bank 007 may owe; its payments up to its cap settle,
the next is refused AM23 and told to the bank; ``sakk liquidity withdraw`` is refused
below the position; ``sakk settlement positions --json`` shows what the ledger holds.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from engine.ledger.models import LiquidityMovement, Notification, Payment
from engine.ops.audit_log import list_actions
from sakk.cli import cli, register_commands
from tests.factories import AMINA, KARIM, YOUSSEF, payment

pytestmark = pytest.mark.integration
register_commands()


def sakk(flow: Any, tmp_path: Path, *args: str) -> Result:
    env = {
        "SAKK_KAFKA_BOOTSTRAP_SERVERS": flow.settings.kafka_bootstrap_servers,
        "SAKK_TOPIC_PREFIX": flow.settings.topic_prefix,
        "SAKK_DATABASE_URL": flow.settings.database_url,
        "SAKK_DATA_DIR": str(tmp_path),
        "SAKK_LOG_LEVEL": "WARNING",
    }
    return CliRunner().invoke(cli, list(args), env=env)


def test_funded_capped_refused_told_and_shown(
    flow_factory: Callable[..., Any], database_url: str, tmp_path: Path
) -> None:
    flow = flow_factory(database_url)
    capped = sakk(flow, tmp_path, "liquidity", "cap", "--bank", "007", "--cap", "500.00",
                  "--alert-percent", "90", "--by", "amal", "--reason", "test")  # fmt: skip
    assert capped.exit_code == 0 and "operator action #1 by amal" in capped.output, capped.output

    funded = sakk(flow, tmp_path, "liquidity", "fund", "--bank", "007", "--amount", "600.00",
                  "--wait", "60", "--json")  # fmt: skip
    assert funded.exit_code == 0, funded.output
    assert json.loads(funded.output)["decided"]["outcome"] == "POSTED"

    flow.publish([payment(AMINA, KARIM, 50_000)])
    flow.wait_until(lambda: _states(flow) == ["SETTLED"])
    flow.publish([payment(YOUSSEF, KARIM, 1)])
    flow.wait_until(lambda: sorted(_states(flow)) == ["FAILED", "SETTLED"])

    withdrawn = sakk(flow, tmp_path, "liquidity", "withdraw", "--bank", "007", "--amount",
                     "100.01", "--wait", "60")  # fmt: skip
    assert withdrawn.exit_code == 1 and "REFUSED" in withdrawn.output
    shown = sakk(flow, tmp_path, "settlement", "positions", "--json")
    assert shown.exit_code == 0, shown.output
    lines = json.loads(shown.output)["positions"]
    (bank_007,) = [v for v in lines if (v["bank_code"], v["currency"]) == ("007", "MAD")]
    assert (bank_007["position_minor"], bank_007["liquidity_minor"]) == (50_000, 60_000)
    assert (bank_007["share_used_bps"], bank_007["headroom_minor"]) == (10_000, 0)

    p, n, m = Payment.__table__, Notification.__table__, LiquidityMovement.__table__

    def told() -> list[tuple[str, str]]:  # the notification stage writes these on its own time
        with flow.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(select(n.c.outcome, n.c.recipient_bank))]

    flow.wait_until(lambda: {("FAILED", "007"), ("CAP_ALERT", "007")} <= set(told()))
    with flow.engine.connect() as conn:
        failed = conn.execute(select(p.c.reason_code).where(p.c.state == "FAILED")).scalar()
        movements = conn.execute(select(m.c.kind, m.c.outcome)).all()
    assert failed == "AM23"
    assert sorted(tuple(r) for r in movements) == [("FUNDS_IN", "POSTED"), ("FUNDS_OUT", "REFUSED")]
    with flow.engine.connect() as conn:  # the cap and each movement are audited actions
        logged = [(a.action, a.target) for a in list_actions(conn)]
    assert logged == [
        ("limits.cap", "bank 007 MAD limits"),
        ("liquidity.movement", "bank 007 MAD liquidity"),
        ("liquidity.movement", "bank 007 MAD liquidity"),
    ]


def _states(flow: Any) -> list[str]:
    with flow.engine.connect() as conn:
        return [r.state for r in conn.execute(select(Payment.__table__.c.state))]
