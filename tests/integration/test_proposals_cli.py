"""Four eyes from the command line: ``--propose`` files, ``sakk proposals`` decides.

A cap, a key revocation and a bulk redelivery proposed by one operator are taken only
when another approves them; a liquidity deposit proposed is published when approved and
settlement posts it; ``sakk audit verify`` holds after all of it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, select

from engine.ledger.database import make_engine, upgrade
from engine.ledger.models import BankKey, BankLimit, LiquidityMovement, table_of
from engine.ledger.reference import load_reference_data, read_file
from engine.ops.audit_log import list_actions
from sakk.cli import cli, register_commands
from tests.factories import REFERENCE_FILE, SIGNERS

pytestmark = pytest.mark.integration
register_commands()


@pytest.fixture
def ledger(database_url: str) -> Iterator[Engine]:
    upgrade(database_url)
    engine = make_engine(database_url)
    load_reference_data(engine, read_file(REFERENCE_FILE))
    yield engine
    engine.dispose()


def sakk(database_url: str, tmp_path: Path, *args: str, **env: str) -> Result:
    given = {"SAKK_DATABASE_URL": database_url, "SAKK_DATA_DIR": str(tmp_path),
             "SAKK_LOG_LEVEL": "WARNING", **env}  # fmt: skip
    return CliRunner().invoke(cli, list(args), env=given)


def proposal_id(result: Result) -> int:
    assert result.exit_code == 0, result.output
    first = result.output.split()[:2]
    assert first[0] == "proposal", result.output
    return int(first[1])


def test_a_cap_proposed_is_set_only_when_another_operator_approves_it(ledger, database_url,
                                                                      tmp_path):  # fmt: skip
    run = lambda *a: sakk(database_url, tmp_path, *a)  # noqa: E731
    filed = run("liquidity", "cap", "--bank", "007", "--cap", "90000.00", "--alert-percent",
                "70", "--by", "ops-amal", "--reason", "new guarantee", "--propose")  # fmt: skip
    number = proposal_id(filed)
    assert "another operator approves it" in filed.output
    t = table_of(BankLimit)
    with ledger.connect() as conn:
        assert conn.execute(select(t.c.alert_percent).where(t.c.bank_code == "007")).scalar() != 70
    own = run("proposals", "approve", str(number), "--by", "ops-amal", "--json")
    assert own.exit_code == 1 and json.loads(own.output)["error"] == "own_proposal"
    listed = run("proposals", "list", "--state", "PENDING", "--json")
    assert [p["id"] for p in json.loads(listed.output)] == [number]
    approved = run("proposals", "approve", str(number), "--by", "ops-badr")
    assert approved.exit_code == 0 and "approved by ops-badr" in approved.output, approved.output
    with ledger.connect() as conn:
        cap = conn.execute(select(t.c.net_debit_cap_minor, t.c.alert_percent)
                           .where(t.c.bank_code == "007", t.c.currency == "MAD")).one()  # fmt: skip
        logged = [(a.action, a.actor) for a in list_actions(conn)]
    assert tuple(cap) == (9_000_000, 70)
    assert logged == [("proposal.propose", "ops-amal"), ("limits.cap", "ops-badr"),
                      ("proposal.approve", "ops-badr")]  # fmt: skip
    shown = json.loads(run("proposals", "show", str(number), "--json").output)
    assert shown["state"] == "APPROVED" and shown["new"]["alert_percent"] == 70
    again = run("proposals", "approve", str(number), "--by", "ops-chama")
    assert again.exit_code == 1 and "is APPROVED by ops-badr" in again.output
    verified = run("audit", "verify")
    assert verified.exit_code == 0, verified.output


def test_a_key_revocation_and_a_bulk_redelivery_wait_for_their_approval(ledger, database_url,
                                                                        tmp_path):  # fmt: skip
    run = lambda *a: sakk(database_url, tmp_path, *a)  # noqa: E731
    key_id = SIGNERS.get("007").key_id
    revoke = proposal_id(run("keys", "revoke", "007", key_id, "--at", "2026-01-01T00:00:00Z",
                             "--by", "ops-amal", "--propose"))  # fmt: skip
    redeliver = str(proposal_id(run("notifications", "redeliver", "--bank", "011", "--by",
                                "ops-amal", "--propose", "--expires-in", "600")))  # fmt: skip
    k = table_of(BankKey)
    with ledger.connect() as conn:
        assert conn.execute(select(k.c.revoked_at).where(k.c.key_id == key_id)).scalar() is None
    refused = run("proposals", "refuse", redeliver, "--by", "ops-badr", "--reason", "not yet")
    assert refused.exit_code == 0 and "refused by ops-badr" in refused.output
    no_reason = run("proposals", "refuse", str(revoke), "--by", "ops-badr")
    assert no_reason.exit_code == 2 and "says why" in no_reason.output
    assert run("proposals", "approve", str(revoke), "--by", "ops-badr").exit_code == 0
    with ledger.connect() as conn:
        assert conn.execute(select(k.c.revoked_at).where(k.c.key_id == key_id)).scalar()
    late = run("proposals", "approve", str(redeliver), "--by", "ops-chama")
    assert late.exit_code == 1 and "REFUSED" in late.output
    refused_early = run("keys", "revoke", "999", "k", "--by", "ops-amal", "--propose")
    assert refused_early.exit_code == 1 and "bank 999 has no key k" in refused_early.output
    assert run("audit", "verify").exit_code == 0


def test_a_deposit_proposed_is_published_when_approved_and_settlement_posts_it(
    flow_factory: Callable[..., Any], database_url: str, tmp_path: Path
) -> None:
    flow = flow_factory(database_url)
    env = {"SAKK_KAFKA_BOOTSTRAP_SERVERS": flow.settings.kafka_bootstrap_servers,
           "SAKK_TOPIC_PREFIX": flow.settings.topic_prefix}  # fmt: skip
    run = lambda *a: sakk(flow.settings.database_url, tmp_path, *a, **env)  # noqa: E731
    number = proposal_id(run("liquidity", "fund", "--bank", "007", "--amount", "600.00",
                             "--by", "ops-amal", "--propose"))  # fmt: skip
    m = table_of(LiquidityMovement)
    with flow.engine.connect() as conn:
        assert conn.execute(select(m.c.movement_id)).first() is None  # nothing published yet
    approved = run("proposals", "approve", str(number), "--by", "ops-badr", "--json")
    assert approved.exit_code == 0, approved.output
    assert "published FundsIn" in json.loads(approved.output)["followed_by"][0]

    def posted() -> Any:
        with flow.engine.connect() as conn:
            return conn.execute(select(m.c.kind, m.c.outcome, m.c.amount_minor)).first()

    flow.wait_until(lambda: posted() is not None)
    assert tuple(posted()) == ("FUNDS_IN", "POSTED", 60_000)
