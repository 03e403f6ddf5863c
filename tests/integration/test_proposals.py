"""Four eyes on both databases: one operator proposes, another approves, the log keeps all.

Nobody approves their own proposal; an expired, refused or decided one is not approved;
an action refused by the time it is approved FAILS with the reason; two approvers racing
take the action once; ``sakk audit verify`` checks each approval against the log.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, insert, select, text
from sqlalchemy.exc import DBAPIError

import sakk.cli.audit  # noqa: F401  (registers ``sakk audit`` on ``cli``)
from engine.ledger.database import make_engine, upgrade
from engine.ledger.dead_letters import BodySource, RedriveRequest, claim_redrive
from engine.ledger.models import BankLimit, DeadLetter, table_of
from engine.ledger.reference import load_reference_data, read_file
from engine.ops.action import ActionRefusedError, Actor, run_action
from engine.ops.audit_log import list_actions, verify_action_log
from engine.ops.keys import RevokeKey
from engine.ops.limits import SetBankLimit
from engine.ops.proposal_check import check_proposals
from engine.ops.proposals import (
    ProposalError,
    ProposalState,
    approve,
    expire_due,
    get_proposal,
    list_proposals,
    pending,
    propose,
    refuse,
)
from engine.ops.redrive import RedriveCorrected
from sakk.cli import cli
from tests.factories import REFERENCE_FILE, SIGNERS

pytestmark = pytest.mark.integration

AMAL, BADR, CHAMA = Actor("ops-amal", "bank 007 raised its guarantee"), "ops-badr", "ops-chama"
CAP = SetBankLimit("007", "MAD", 9_000_000_00, 75)
TTL_S = 3_600


@pytest.fixture
def ledger(database_url: str) -> Iterator[Engine]:
    upgrade(database_url)
    engine = make_engine(database_url)
    load_reference_data(engine, read_file(REFERENCE_FILE))
    yield engine
    engine.dispose()


def now() -> datetime:
    return datetime.now(UTC)


def cap_of(ledger: Engine, bank: str = "007") -> int | None:
    t = table_of(BankLimit)
    with ledger.connect() as conn:
        return conn.execute(
            select(t.c.net_debit_cap_minor).where(t.c.bank_code == bank, t.c.currency == "MAD")
        ).scalar()


def log(ledger: Engine) -> list[tuple[str, str, str]]:
    with ledger.connect() as conn:
        return [(a.action, a.actor, a.target) for a in list_actions(conn)]


def verified(ledger: Engine) -> list[str]:
    with ledger.connect() as conn:
        check = verify_action_log(conn)
        return check.problems + check_proposals(conn)


def test_a_proposal_shows_what_it_would_change_and_changes_nothing_yet(ledger):
    before = cap_of(ledger)
    proposal = propose(ledger, CAP, AMAL, now(), TTL_S)
    assert proposal.state is ProposalState.PENDING and proposal.action == "limits.cap"
    assert proposal.preview_old["net_debit_cap_minor"] == before
    assert proposal.preview_new["net_debit_cap_minor"] == 9_000_000_00
    assert cap_of(ledger) == before
    assert log(ledger) == [("proposal.propose", "ops-amal", f"proposal {proposal.id}")]
    assert [p.id for p in pending(ledger, now())] == [proposal.id]


def test_nobody_approves_their_own_proposal_and_another_operator_does(ledger):
    proposal = propose(ledger, CAP, AMAL, now(), TTL_S)
    with pytest.raises(ProposalError, match="another operator approves it") as own:
        approve(ledger, proposal.id, "ops-amal", now())
    assert own.value.code == "own_proposal" and cap_of(ledger) != 9_000_000_00
    done = approve(ledger, proposal.id, Actor(BADR, "checked the guarantee"), now())
    assert cap_of(ledger) == 9_000_000_00
    approved = get_proposal(ledger, proposal.id, now())
    assert approved.state is ProposalState.APPROVED and approved.decided_by == BADR
    assert approved.action_seq == done.seq
    target = f"proposal {proposal.id}"
    assert log(ledger) == [
        ("proposal.propose", "ops-amal", target),
        ("limits.cap", BADR, "bank 007 MAD limits"),
        ("proposal.approve", BADR, target),
    ]
    with ledger.connect() as conn:
        action = list_actions(conn)[1].as_dict()
    assert action["new"]["net_debit_cap_minor"] == 9_000_000_00 and action["old"] is not None
    assert f"proposal {proposal.id} by ops-amal" in action["reason"]
    assert verified(ledger) == []


def test_a_proposal_is_approved_once(ledger):
    proposal = propose(ledger, CAP, AMAL, now(), TTL_S)
    approve(ledger, proposal.id, BADR, now())
    with pytest.raises(ProposalError, match=f"is APPROVED by {BADR}") as twice:
        approve(ledger, proposal.id, CHAMA, now())
    assert twice.value.code == "decided"
    assert [a for a, _, _ in log(ledger)].count("limits.cap") == 1


def test_a_refused_proposal_cannot_be_approved_and_its_proposer_may_withdraw_one(ledger):
    refused = propose(ledger, CAP, AMAL, now(), TTL_S)
    refuse(ledger, refused.id, BADR, now(), "the guarantee has not arrived")
    with pytest.raises(ProposalError, match="is REFUSED") as late:
        approve(ledger, refused.id, CHAMA, now())
    assert late.value.code == "decided" and cap_of(ledger) != 9_000_000_00
    withdrawn = propose(ledger, CAP, AMAL, now(), TTL_S)
    assert refuse(ledger, withdrawn.id, "ops-amal", now(), "wrong bank").state == "REFUSED"
    with pytest.raises(ProposalError, match="says why"):
        refuse(ledger, propose(ledger, CAP, AMAL, now(), TTL_S).id, BADR, now(), " ")
    assert ("proposal.refuse", BADR, f"proposal {refused.id}") in log(ledger)
    assert verified(ledger) == []


def test_an_expired_proposal_is_not_approved_and_is_expired_when_read(ledger):
    start = now()
    first = propose(ledger, CAP, AMAL, start, 60)
    second = propose(ledger, RevokeKey("007", SIGNERS.get("007").key_id, start), AMAL, start, 60)
    propose(ledger, SetBankLimit("011", "MAD", 1_000_00, 90), AMAL, start, 120)
    later = start + timedelta(seconds=61)
    with pytest.raises(ProposalError, match="expired") as expired:
        approve(ledger, first.id, BADR, later)
    assert expired.value.code == "expired"
    assert get_proposal(ledger, first.id, later).state is ProposalState.EXPIRED
    assert get_proposal(ledger, second.id, later).state is ProposalState.EXPIRED  # on read
    assert expire_due(ledger, later) == 0  # the third has a minute left
    assert expire_due(ledger, start + timedelta(seconds=121)) == 1
    assert [p.state for p in list_proposals(ledger, later)] == ["EXPIRED"] * 3
    expiries = [a for a in log(ledger) if a[0] == "proposal.expire"]
    assert [(a, who) for a, who, _ in expiries] == [("proposal.expire", "sakk-expiry")] * 3
    assert verified(ledger) == []


def test_an_action_its_rules_refuse_is_not_proposed(ledger):
    with pytest.raises(ActionRefusedError, match="no bank 999"):
        propose(ledger, SetBankLimit("999", "MAD", 1_000_00, 80), AMAL, now(), TTL_S)
    run_action(ledger, CAP, Actor(CHAMA), now())
    with pytest.raises(ProposalError, match="nothing would change") as noop:
        propose(ledger, CAP, AMAL, now(), TTL_S)
    assert noop.value.code == "noop" and [a for a, _, _ in log(ledger)] == ["limits.cap"]


def dead_letter(ledger: Engine) -> int:
    with ledger.begin() as conn:
        return int(
            conn.execute(
                insert(table_of(DeadLetter)).values(
                    consumer="validator",
                    source_topic="payments.initiated",
                    source_partition=0,
                    source_offset=7,
                    kind="schema",
                    reason="bad amount",
                    payment_id=None,
                    recorded_at=now(),
                )  # fmt: skip
            ).inserted_primary_key[0]
        )


def test_an_action_refused_by_the_time_it_is_approved_fails_with_the_reason(ledger):
    letter = dead_letter(ledger)
    proposal = propose(ledger, RedriveCorrected(letter, b'{"amount": 100}'), AMAL, now(), TTL_S)
    assert proposal.preview_new["body_bytes"] == 15
    request = RedriveRequest(letter, CHAMA, now(), "break glass", BodySource.ORIGINAL,
                             "payments.initiated", None, b"x", None, None)  # fmt: skip
    claim_redrive(ledger, request)  # meanwhile redriven as it was
    with pytest.raises(ProposalError, match="already redriven by ops-chama") as failed:
        approve(ledger, proposal.id, BADR, now())
    assert failed.value.code == "failed"
    kept = get_proposal(ledger, proposal.id, now())
    assert kept.state is ProposalState.FAILED and "already redriven" in (kept.decision_reason or "")
    # A change made meanwhile by the break-glass path: nothing left to change, FAILED too.
    capped = propose(ledger, CAP, AMAL, now(), TTL_S)
    run_action(ledger, CAP, Actor(CHAMA), now())
    with pytest.raises(ProposalError, match="nothing any more"):
        approve(ledger, capped.id, BADR, now())
    assert [a for a, _, _ in log(ledger)].count("proposal.fail") == 2
    assert verified(ledger) == []


def test_two_operators_approving_at_once_take_the_action_once(ledger, database_url):
    proposal = propose(ledger, CAP, AMAL, now(), TTL_S)
    engines = [make_engine(database_url) for _ in range(2)]
    barrier = threading.Barrier(2)
    outcomes: list[Any] = []

    def approve_as(engine: Engine, who: str) -> None:
        barrier.wait(timeout=10)
        try:
            outcomes.append(approve(engine, proposal.id, who, now()))
        except ProposalError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=approve_as, args=(e, w))
               for e, w in zip(engines, (BADR, CHAMA), strict=True)]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    for e in engines:
        e.dispose()
    errors = [o for o in outcomes if isinstance(o, ProposalError)]
    assert len(outcomes) == 2 and len(errors) == 1 and errors[0].code == "decided"
    assert [a for a, _, _ in log(ledger)].count("limits.cap") == 1
    assert verified(ledger) == []


def test_decided_proposals_never_change_and_none_is_deleted(ledger):
    proposal = propose(ledger, CAP, AMAL, now(), TTL_S)
    with pytest.raises(DBAPIError), ledger.begin() as conn:
        conn.execute(text("UPDATE operator_proposals SET request = '{}' WHERE id = :i"),
                     {"i": proposal.id})  # fmt: skip
    with pytest.raises(DBAPIError), ledger.begin() as conn:  # back to PENDING: never
        conn.execute(text("UPDATE operator_proposals SET state = 'PENDING' WHERE id = :i"),
                     {"i": proposal.id})  # fmt: skip
    approve(ledger, proposal.id, BADR, now())
    for sql in ("UPDATE operator_proposals SET decided_by = 'ops-zed' WHERE id = :i",
                "UPDATE operator_proposals SET state = 'REFUSED' WHERE id = :i",
                "DELETE FROM operator_proposals WHERE id = :i"):  # fmt: skip
        with pytest.raises(DBAPIError), ledger.begin() as conn:
            conn.execute(text(sql), {"i": proposal.id})
    assert get_proposal(ledger, proposal.id, now()).state is ProposalState.APPROVED


def drop_guard(conn: Any) -> None:
    if conn.dialect.name == "sqlite":
        conn.execute(text("DROP TRIGGER operator_proposals_decided_once"))
        conn.execute(text("DROP TRIGGER operator_proposals_no_delete"))
    else:
        conn.execute(text("DROP TRIGGER operator_proposals_guard ON operator_proposals"))


def verify_cli(database_url: str, tmp_path: Any) -> tuple[int, str]:
    result = CliRunner().invoke(
        cli, ["audit", "verify", "--database-url", database_url],
        env={"SAKK_DATA_DIR": str(tmp_path), "SAKK_LOG_LEVEL": "WARNING"},
    )  # fmt: skip
    return result.exit_code, result.output


def test_audit_verify_checks_each_approval_against_the_log(ledger, database_url, tmp_path):
    approved = propose(ledger, CAP, AMAL, now(), TTL_S)
    approve(ledger, approved.id, BADR, now())
    swapped = propose(ledger, SetBankLimit("011", "MAD", 1_000_00, 90), AMAL, now(), TTL_S)
    code, output = verify_cli(database_url, tmp_path)
    assert code == 0, output
    with ledger.begin() as conn:
        drop_guard(conn)
        conn.execute(text("DELETE FROM operator_proposals WHERE id = :i"), {"i": approved.id})
        conn.execute(
            text("UPDATE operator_proposals SET request = :r WHERE id = :i"),
            {"r": '{"action":"limits.cap","request":{}}', "i": swapped.id},
        )
    with ledger.connect() as conn:
        problems = check_proposals(conn)
    assert any(f"approves proposal {approved.id}, which is not APPROVED" in p for p in problems)
    assert any(f"proposal {swapped.id} " in p and "SHA-256" in p for p in problems)
    code, output = verify_cli(database_url, tmp_path)
    assert code == 1 and "OPERATOR AUDIT LOG BROKEN" in output


def test_a_users_role_changes_with_four_eyes_and_no_hash_is_shown(ledger):
    from engine.ledger.console import get_user
    from engine.ops.users import ChangeRole, CreateUser, ResetPassword, hash_password

    password_hash = hash_password("a long enough passphrase")
    for name in ("kenza", "root"):  # two operators: the last one never changes role
        run_action(ledger, CreateUser(name, "operator", None, password_hash, "root"), AMAL, now())
    role = propose(ledger, ChangeRole("kenza", "auditor", None), AMAL, now(), TTL_S)
    reset = propose(ledger, ResetPassword("kenza", password_hash), AMAL, now(), TTL_S)
    shown = reset.as_dict(with_request=True)
    assert shown["request"]["request"]["password_hash"] == "(hidden)"
    assert password_hash not in str(shown) and password_hash not in str(log(ledger))
    approve(ledger, role.id, BADR, now())
    with ledger.connect() as conn:
        user = get_user(conn, "kenza")
    assert user is not None and user.role == "auditor"
    assert verified(ledger) == []
