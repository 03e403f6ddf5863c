"""Operator actions on both databases: each leaves a record in a hash-chained, append-only log
that ``sakk audit verify`` checks; a row altered behind the triggers is named."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, insert, select, text
from sqlalchemy.exc import DBAPIError

import sakk.cli.accounts
import sakk.cli.audit
import sakk.cli.keys
import sakk.cli.reference
import sakk.cli.settlement  # noqa: F401  (each module registers its command on ``cli``)
from engine.audit.windows import Window
from engine.ledger.database import make_engine, upgrade
from engine.ledger.models import FeeRule, ReferenceVersion
from engine.ledger.models import Notification as NotificationRow
from engine.ledger.notifications import NotificationFilter
from engine.ledger.reference import load_reference_data, read_file
from engine.ops.action import ActionRefusedError, Actor, run_action
from engine.ops.audit_log import list_actions, verify_action_log
from engine.ops.keys import RevokeKey
from engine.ops.notifications import Redeliver
from engine.ops.reference import SetBankDelivery, SetFee
from engine.ops.windows import CloseWindow
from sakk.cli import cli
from tests.factories import REFERENCE_FILE, SIGNERS

pytestmark = pytest.mark.integration

AMAL = Actor("ops-amal", "tariff of December")
NOTICE_S = 360


@pytest.fixture
def ledger(database_url: str) -> Iterator[Engine]:
    upgrade(database_url)
    engine = make_engine(database_url)
    load_reference_data(engine, read_file(REFERENCE_FILE))
    yield engine
    engine.dispose()


def new_fee(fixed_minor: int) -> SetFee:
    rule = {"fixed_minor": fixed_minor, "rate_bps": 0, "max_minor": None}
    return SetFee("WEB", "TRANSFER", "MAD", rule, NOTICE_S, 30.0)


def take_three_actions(ledger: Engine) -> datetime:
    now = datetime.now(UTC)
    run_action(ledger, new_fee(700), AMAL, now)
    run_action(ledger, RevokeKey("007", SIGNERS.get("007").key_id, now), AMAL, now)
    day = Window.containing(now - timedelta(days=2))
    run_action(ledger, CloseWindow(day), Actor("ops-badr"), now)
    return now


def test_each_action_is_recorded_with_who_when_what_and_old_and_new_values(ledger):
    now = take_three_actions(ledger)
    with ledger.connect() as conn:
        actions = list_actions(conn)
        fee = conn.execute(select(FeeRule.fixed_minor).where(FeeRule.channel == "WEB",
                           FeeRule.payment_type == "TRANSFER")).scalar_one()  # fmt: skip
        (version,) = conn.execute(select(ReferenceVersion.__table__)).all()
        check = verify_action_log(conn)
    assert [(a.seq, a.action, a.actor) for a in actions] == [
        (1, "reference.fee", "ops-amal"), (2, "key.revoke", "ops-amal"),
        (3, "window.close", "ops-badr"),
    ]  # fmt: skip
    first = actions[0].as_dict()
    assert first["target"] == "fee WEB/TRANSFER/MAD" and first["reason"] == "tariff of December"
    assert first["old"] == {"fixed_minor": 500, "rate_bps": 0, "max_minor": None}
    assert first["new"]["value"]["fixed_minor"] == 700
    assert abs(actions[0].acted_at - now) < timedelta(seconds=1)
    assert fee == 700 and version.version == 1 and version.action_seq == 1
    assert check.ok and check.rows == 3 and actions[1].prev_hash == actions[0].row_hash


def test_a_refused_action_writes_nothing(ledger):
    run_action(ledger, new_fee(700), AMAL, datetime.now(UTC))
    with pytest.raises(ActionRefusedError, match="nothing changes"):
        run_action(ledger, new_fee(700), AMAL, datetime.now(UTC))
    with pytest.raises(ActionRefusedError, match="unknown"):
        run_action(ledger, SetBankDelivery("999", {"notification_format": "json"}), AMAL,
                   datetime.now(UTC))  # fmt: skip
    with ledger.connect() as conn:
        assert len(list_actions(conn)) == 1


def test_the_log_refuses_update_and_delete(ledger):
    take_three_actions(ledger)
    with pytest.raises(DBAPIError, match="append-only"), ledger.begin() as conn:
        conn.execute(text("UPDATE operator_actions SET actor = 'nobody'"))
    with pytest.raises(DBAPIError, match="append-only"), ledger.begin() as conn:
        conn.execute(text("DELETE FROM operator_actions WHERE seq = 3"))
    with pytest.raises(DBAPIError, match="append-only"), ledger.begin() as conn:
        conn.execute(text("UPDATE reference_versions SET new_value = NULL"))


def drop_guard(conn: Any) -> None:
    if conn.dialect.name == "sqlite":
        conn.execute(text("DROP TRIGGER operator_actions_no_update"))
        conn.execute(text("DROP TRIGGER operator_actions_no_delete"))
    else:
        conn.execute(text("DROP TRIGGER operator_actions_append_only ON operator_actions"))


def verify_cli(database_url: str, tmp_path: Any) -> tuple[int, str]:
    result = CliRunner().invoke(
        cli, ["audit", "verify", "--database-url", database_url],
        env={"SAKK_DATA_DIR": str(tmp_path), "SAKK_LOG_LEVEL": "WARNING"},
    )  # fmt: skip
    return result.exit_code, result.output


def test_a_row_altered_behind_the_triggers_is_named_by_audit_verify(ledger, database_url, tmp_path):
    take_three_actions(ledger)
    assert verify_cli(database_url, tmp_path)[0] == 0
    with ledger.begin() as conn:
        drop_guard(conn)
        conn.execute(text("UPDATE operator_actions SET new_value = :v WHERE seq = 1"), {"v": "{}"})
    with ledger.connect() as conn:
        check = verify_action_log(conn)
    assert check.problems == [
        "operator action #1 (reference.fee fee WEB/TRANSFER/MAD by ops-amal): content altered "
        "(its hash no longer matches)"
    ]
    code, out = verify_cli(database_url, tmp_path)
    assert code == 1 and "OPERATOR AUDIT LOG BROKEN" in out and "operator action #1" in out


def test_a_row_deleted_behind_the_triggers_is_named(ledger):
    take_three_actions(ledger)
    with ledger.begin() as conn:
        drop_guard(conn)
        conn.execute(text("DELETE FROM operator_actions WHERE seq = 2"))
    with ledger.connect() as conn:
        problems = verify_action_log(conn).problems
    assert problems == [
        "operator action #3 (window.close window "
        f"{Window.containing(datetime.now(UTC) - timedelta(days=2)).label} by ops-badr): "
        "expected #2 here, rows are missing",
        "operator action #3 (window.close window "
        f"{Window.containing(datetime.now(UTC) - timedelta(days=2)).label} by ops-badr): "
        "prev_hash does not match the row before it",
    ]


def test_audit_log_lists_the_actions_and_operators_name_themselves(ledger, database_url, tmp_path):
    env = {"SAKK_DATABASE_URL": database_url, "SAKK_DATA_DIR": str(tmp_path),
           "SAKK_LOG_LEVEL": "WARNING", "SAKK_OPERATOR": "ops-chama"}  # fmt: skip
    runner = CliRunner()
    changed = runner.invoke(
        cli, ["reference", "fee", "WEB", "TRANSFER", "MAD", "--fixed-minor", "650",
              "--reason", "new tariff"], env=env,
    )  # fmt: skip
    assert changed.exit_code == 0, changed.output
    assert "fixed_minor=500" in changed.output and "fixed_minor=650" in changed.output
    again = runner.invoke(
        cli, ["reference", "fee", "WEB", "TRANSFER", "MAD", "--fixed-minor", "650"], env=env
    )
    assert again.exit_code == 1 and "nothing changes" in again.output
    bank = runner.invoke(cli, ["reference", "bank", "011", "--format", "pacs.002", "--by", "ops-d"],
                         env=env)  # fmt: skip
    assert bank.exit_code == 0, bank.output
    listed = runner.invoke(cli, ["audit", "log", "--format", "json"], env=env)
    rows = json.loads(listed.output)
    assert [(r["seq"], r["actor"], r["action"]) for r in rows] == [
        (1, "ops-chama", "reference.fee"), (2, "ops-d", "reference.bank"),
    ]  # fmt: skip
    assert rows[0]["reason"] == "new tariff" and rows[1]["new"]["value"]["notification_format"]
    page = runner.invoke(cli, ["audit", "log", "--after", "1"], env=env)
    assert "#2" in page.output and "#1 " not in page.output and "1 operator actions" in page.output


def failed_notification(nid: str, bank: str) -> dict[str, Any]:
    return {"notification_id": nid, "payment_id": f"007:{nid}", "outcome": "SETTLED",
            "recipient_bank": bank, "sender": "webhook", "status": "FAILED", "attempts": 9,
            "payload": "{}", "source_event_id": f"007:e-{nid}", "created_at": datetime.now(UTC),
            "round": 0}  # fmt: skip


def test_a_redelivery_is_the_books_and_its_record_names_what_moved(ledger):
    with ledger.begin() as conn:
        conn.execute(insert(NotificationRow), [failed_notification("n1", "011"),
                                               failed_notification("n2", "007")])  # fmt: skip
    action = Redeliver(NotificationFilter(status="FAILED", bank="011"), "ops-amal", 3600, "up")
    done = run_action(ledger, action, AMAL, datetime.now(UTC))
    assert done.result.redelivered == ["n1"]
    with ledger.connect() as conn:
        (logged,) = list_actions(conn)
        statuses = dict(conn.execute(select(NotificationRow.notification_id,
                                            NotificationRow.status)).all())  # fmt: skip
    record = logged.as_dict()
    assert record["action"] == "notifications.redeliver" and record["old"] == {"status": "FAILED"}
    assert record["new"]["ids"] == ["n1"] and record["new"]["selection"]["bank"] == "011"
    assert statuses == {"n1": "PENDING", "n2": "FAILED"}


def test_operators_acting_at_once_take_turns_and_the_chain_stays_whole(ledger):
    items = [(c, t) for c in ("WEB", "MOBILE", "POS") for t in ("TRANSFER", "PURCHASE")]

    def change(item: tuple[str, str]) -> int | None:
        rule = {"fixed_minor": 123, "rate_bps": 0, "max_minor": None}
        action = SetFee(item[0], item[1], "MAD", rule, NOTICE_S, 30.0)
        return run_action(ledger, action, Actor(f"ops-{item[0]}"), datetime.now(UTC)).seq

    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        seqs = list(pool.map(change, items))
    with ledger.connect() as conn:
        check = verify_action_log(conn)
        versions = conn.execute(select(ReferenceVersion.version, ReferenceVersion.action_seq)).all()
    assert sorted(seqs) == list(range(1, len(items) + 1))  # type: ignore[type-var]
    assert check.ok and check.rows == len(items)
    assert sorted(versions) == [(n, n) for n in range(1, len(items) + 1)]


def test_revoking_a_key_and_closing_a_window_from_the_command_line_are_logged(
    ledger, database_url, tmp_path
):
    env = {"SAKK_DATABASE_URL": database_url, "SAKK_DATA_DIR": str(tmp_path),
           "SAKK_LOG_LEVEL": "WARNING", "SAKK_OPERATOR": "ops-chama"}  # fmt: skip
    runner = CliRunner()
    key_id = SIGNERS.get("007").key_id
    revoke = ["keys", "revoke", "007", key_id, "--at", "2026-01-01T00:00:00Z", "--reason", "leak"]
    assert runner.invoke(cli, revoke, env=env).exit_code == 0
    later = ["keys", "revoke", "007", key_id, "--at", "2026-06-01T00:00:00Z"]
    kept = runner.invoke(cli, later, env=env)
    assert kept.exit_code == 0 and "that revocation is kept" in kept.output
    day = Window.containing(datetime.now(UTC) - timedelta(days=3)).label
    close = ["settlement", "close", "--window", day, "--no-publish", "--by", "ops-badr"]
    assert runner.invoke(cli, close, env=env).exit_code == 0
    assert runner.invoke(cli, close, env=env).exit_code == 0  # closed already: nothing logged
    rows = json.loads(runner.invoke(cli, ["audit", "log", "--format", "json"], env=env).output)
    assert [(r["actor"], r["action"], r["target"]) for r in rows] == [
        ("ops-chama", "key.revoke", f"key 007/{key_id}"),
        ("ops-badr", "window.close", f"window {day}"),
    ]
    assert rows[0]["old"] == {"revoked_at": None} and rows[0]["reason"] == "leak"
    assert rows[0]["new"] == {"revoked_at": "2026-01-01T00:00:00+00:00"}


def test_loading_a_reference_file_is_logged_with_the_fees_and_limits_it_changed(
    ledger, database_url, tmp_path
):
    data = json.loads(REFERENCE_FILE.read_text())
    data["fee_schedule"][0]["fixed_minor"] = 550  # WEB TRANSFER MAD, 500 in the ledger
    changed = tmp_path / "reference.json"
    changed.write_text(json.dumps(data))
    env = {"SAKK_DATABASE_URL": database_url, "SAKK_DATA_DIR": str(tmp_path),
           "SAKK_LOG_LEVEL": "WARNING"}  # fmt: skip
    loaded = CliRunner().invoke(cli, ["accounts", "load", str(changed), "--by", "ops-e"], env=env)
    assert loaded.exit_code == 0, loaded.output
    assert "5 fee rules" in loaded.output
    with ledger.connect() as conn:
        (row,) = [r.as_dict() for r in list_actions(conn)]
    assert (row["actor"], row["action"], row["target"]) == (
        "ops-e", "reference.load", "reference file reference.json",
    )  # fmt: skip
    assert row["old"] == {"fee WEB/TRANSFER/MAD": {"fixed_minor": 500, "rate_bps": 0,
                                                   "max_minor": None}}  # fmt: skip
    assert row["new"]["changed"]["fee WEB/TRANSFER/MAD"]["fixed_minor"] == 550
    assert len(row["new"]["sha256"]) == 64
