"""A short seeded chaos run on each database: a regression in exactly-once effects fails CI.

Consumers run as separate processes against their own embedded broker (it gets
SIGSTOPped, so never the session's shared one) and a fresh ledger database.
"""

from __future__ import annotations

import pytest

from engine.config import load_settings
from tests.conftest import POSTGRES_ADMIN_URL, postgres_available
from tooling.chaos.harness import ChaosConfig, run_chaos
from tooling.chaos.plan import (
    BANK_OUTAGE,
    BROKER_FREEZE,
    CRASH_POINT,
    DATABASE_OUTAGE,
    FAULT_KINDS,
    GRACEFUL_STOP,
    KILL,
    MID_BATCH_KILL,
)
from tooling.workload.pressing import CAP_BOUND, LIQUIDITY_BOUND

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PAYMENTS = 300


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_short_seeded_chaos_run_keeps_every_invariant(backend, tmp_path):
    if backend == "postgresql" and (reason := postgres_available()):
        pytest.fail(reason)
    url = "sqlite" if backend == "sqlite" else POSTGRES_ADMIN_URL
    config = ChaosConfig(
        seed=11, payments=PAYMENTS, duration_s=30, database_url=url, drain_timeout_s=120
    )
    report = run_chaos(config, load_settings(environ={}, data_dir=tmp_path))
    text = report.render()
    assert report.violations == [], text
    assert text.splitlines()[-1] == "violations: 0"
    # The pressing banks' payments are an extra flow (tooling.workload.pressing).
    assert report.checked.payments == PAYMENTS + report.pressing_payments > PAYMENTS
    assert report.checked.dead_lettered == sum(report.poison.values()) > 0
    # The planted poison killed validators until it was quarantined (kind poison, its
    # reason naming MAX_DEATHS deaths alone: check_outcomes), and the line went on.
    assert report.poison["kills_consumer"] == 1 and report.poison_deaths >= 1, text
    assert report.bank_retries > 0
    injected = {kind for kind, count in report.faults.items() if count > 0}
    # Faults that need nothing but time always happen. A crash at a step, mid-batch or on
    # SIGTERM needs its target up and a batch to reach: when timing denies it one, the
    # report says so ("planned, not reached"), and at least one crash of each sort fires.
    # How many of the armed points a batch reaches before it is disarmed depends on the
    # machine's load, so only "at least one" is a property of the code.
    timed = {KILL, BROKER_FREEZE, DATABASE_OUTAGE, BANK_OUTAGE, "webhook_failure"}
    assert timed <= injected, text
    assert set(FAULT_KINDS) <= injected | set(report.missed), text
    assert report.faults[CRASH_POINT] >= 1, text
    assert injected & {MID_BATCH_KILL, GRACEFUL_STOP}, text
    assert report.drain_s is not None
    assert report.checked.notifications == {"DELIVERED": sum(report.checked.notifications.values())}
    # The bank outage bit: its endpoint held requests, and both p99s were measured.
    assert report.webhook_modes["down"] > 0, text
    latency = report.checked.latency
    assert latency is not None and latency.down_bank == report.down_bank, text
    assert latency.down_count > 0 and latency.healthy_count > 0, text
    # Interbank risk under faults: both limits refused payments, each refusal was told
    # to its payer's bank, funds moved in and out (the uncovering withdrawal refused),
    # and the business day's window was closed, settled and confirmed; the invariants of
    # tooling.chaos.risk_checks held (no violation above).
    risk = report.checked.risk
    assert risk.refusals[f"{CAP_BOUND} AM23"] > 0, text
    assert risk.refusals[f"{LIQUIDITY_BOUND} AM04"] > 0, text
    assert risk.told == sum(risk.refusals.values()), text
    assert sum(risk.settled.values()) > 0, text
    assert risk.movements == {"FundsIn POSTED": 1, "FundsOut POSTED": 1, "FundsOut REFUSED": 1}
    assert "SETTLED" in risk.windows.values(), text
    assert risk.settled_nets, text
