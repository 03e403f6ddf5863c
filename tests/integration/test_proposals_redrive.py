"""A dead letter redriven with a corrected body under four eyes: nothing is sent until a
second operator approves that very body; then it is sent, and the payment settles."""

from __future__ import annotations

import json

import pytest

import sakk.cli.proposals  # noqa: F401  (registers ``sakk proposals``)
from engine.ops.audit_log import list_actions
from tests.factories import AMINA, KARIM, payment
from tests.integration.test_dlq_redrive import (  # noqa: F401  (``sakk`` is a fixture)
    KEY,
    STAGES,
    corrected_files,
    dead_letters,
    ledger_rows,
    sakk,
    state_of,
)

pytestmark = pytest.mark.integration


def test_a_corrected_body_is_sent_only_once_a_second_operator_approves_it(
    flow_factory,
    database_url,
    tmp_path,
    sakk,  # noqa: F811
):
    flow = flow_factory(database_url, consumers=STAGES)
    p = payment(AMINA, KARIM, 4_000)
    flow.publish_encoded([flow.codec.encode("PaymentInitiated", p)[:25]], key=KEY)
    flow.wait_until(lambda: len(dead_letters(flow)) == 1)
    run = sakk(flow)
    dead_letter_id = str(dead_letters(flow)[0].id)
    fix = corrected_files(flow, tmp_path, p)

    code, out = run("dlq", "redrive", dead_letter_id, *fix, "--by", "alice", "--propose")
    assert code == 0 and out.startswith("proposal "), out
    number = out.split()[1]
    assert ledger_rows(flow)[2] == []  # no redrive requested, nothing sent
    code, out = run("proposals", "approve", number, "--by", "alice")
    assert code == 1 and "another operator approves it" in out
    code, out = run("proposals", "approve", number, "--by", "bob", "--json")
    assert code == 0, out
    (line,) = json.loads(out)["followed_by"]
    assert "redriven (corrected body)" in line
    flow.wait_until(lambda: state_of(flow, p) == "SETTLED")
    with flow.engine.connect() as conn:
        logged = [(a.action, a.actor) for a in list_actions(conn)]
    assert logged == [("proposal.propose", "alice"), ("dlq.redrive.corrected", "bob"),
                      ("proposal.approve", "bob"), ("dlq.redrive", "bob")]  # fmt: skip
    code, out = run("dlq", "redrive", dead_letter_id, *fix, "--by", "alice", "--propose")
    assert code == 1 and "already redriven by bob" in out
