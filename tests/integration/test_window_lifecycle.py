"""A window's lifecycle in the ledger: closed, settled to a pacs.009, confirmed or aborted.

Every move is a row that never changes; a confirmation that differs from the window in
any way is refused whole; a settled window lowers each bank's position by its nets only.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from click.testing import CliRunner
from sqlalchemy import Engine, func, inspect, select, text
from sqlalchemy.exc import DBAPIError

import sakk.cli.audit
import sakk.cli.positions
import sakk.cli.settlement
import sakk.cli.settlement_windows  # noqa: F401  (each module registers its commands)
from engine.audit.chain import verify
from engine.audit.settled_windows import unsettled_nets
from engine.audit.window_events import publish_transitions, read_transition_events
from engine.audit.window_lifecycle import (
    Transition,
    TransitionRefused,
    record_transition,
    replay_states,
    state_differences,
    window_rows,
    window_settlements,
    window_state,
)
from engine.audit.window_settlement import (
    Answer,
    abort_window,
    confirm_window,
    parties_of,
    read_answers,
    settle_window,
    window_batches,
)
from engine.audit.windows import Window, close_window
from engine.ledger.database import alembic_config, make_engine, upgrade
from engine.ledger.models import SettlementWindowEvent, WindowSettlement, table_of
from engine.ops.audit_log import list_actions
from engine.risk.confirmation import AnswerLine, answer_lines, build_answer
from engine.risk.instruction import Parties, SettlementBatch
from engine.risk.windows import WindowEvent, WindowState
from sakk.cli import cli
from tests.integration.test_audit_tamper import build_ledger, drop_append_only_guard
from tests.integration.test_audit_windows import DAY1, three_days

pytestmark = pytest.mark.integration

DAY2 = DAY1 + timedelta(days=1)
LATER = DAY1 + timedelta(days=4)
BY = Transition("operator-1")


@pytest.fixture
def ledger(database_url: str):  # type: ignore[no-untyped-def]
    engine = build_ledger(database_url, three_days())
    yield engine
    engine.dispose()


def parties(engine: Engine) -> Parties:
    with engine.connect() as conn:
        return parties_of(conn, "SAKK", "BAM", "SRBM")


def settle(engine: Engine, label: str) -> tuple[SettlementBatch, ...]:
    return settle_window(
        engine, label, parties(engine), "operator-1", LATER, lambda _: None
    ).batches


def answer(engine: Engine, batch: SettlementBatch, lines: Any = None) -> Answer:
    """The settlement bank's pacs.002 for ``batch``: faithful unless ``lines`` are given."""
    data = build_answer(
        batch.message_id, answer_lines(batch) if lines is None else lines, parties(engine), LATER
    )
    return read_answers([("answer.xml", data)], parties(engine))[0]


def closed(engine: Engine, *days: datetime) -> list[str]:
    for day in days:
        close_window(engine, Window(day), LATER, details=BY)
    return [Window(day).label for day in days]


def count(engine: Engine, model: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table_of(model))).scalar_one())


def test_a_settled_window_restores_headroom_and_the_other_windows_debt_still_counts(ledger):
    day1, day2 = closed(ledger, DAY1, DAY2)
    with ledger.connect() as conn:
        before = unsettled_nets(conn)
    (batch,) = settle(ledger, day1)
    result = confirm_window(ledger, [answer(ledger, batch)], "operator-1", LATER)
    assert result.ok and result.label == day1, result.differences
    with ledger.connect() as conn:
        after = unsettled_nets(conn)
        assert window_state(conn, day1).state is WindowState.SETTLED
        assert window_state(conn, day2).state is WindowState.CLOSED
        settled = window_settlements(conn)[day1]
        day2_nets = {line.bank: line.net_minor for line in window_batches(conn, day2, 1)[0].nets}
        report = verify(conn)
    assert settled == {(line.bank, "MAD"): line.net_minor for line in batch.lines}
    debtors = [line.bank for line in batch.lines if line.pays]
    assert debtors
    for bank in {b for b, _ in before}:
        owed = settled.get((bank, "MAD"), 0)
        assert after.get((bank, "MAD"), 0) == before.get((bank, "MAD"), 0) - owed
    for bank in debtors:  # headroom came back by exactly this window's net
        assert after.get((bank, "MAD"), 0) < before[(bank, "MAD")]
    # what day 2 (closed, not settled) took still counts in each bank's position
    assert sum(day2_nets.values()) == 0 and any(day2_nets.values())
    assert report.ok, report.settlement.problems
    assert report.settlement.settled == 1 and report.settlement.windows == 2


def test_illegal_transitions_are_refused_and_write_nothing(ledger):
    (day1,) = closed(ledger, DAY1)
    open_day = Window(DAY2).label
    rows = count(ledger, SettlementWindowEvent)
    with pytest.raises(TransitionRefused, match="is CLOSED: cannot abort"):
        abort_window(ledger, day1, "no answer", "operator-1", LATER)
    with pytest.raises(TransitionRefused, match="is OPEN: cannot settle"):
        settle(ledger, open_day)
    with ledger.connect() as conn:
        batch = window_batches(conn, day1, 1)[0]
    with pytest.raises(TransitionRefused, match="is CLOSED: cannot confirm"):
        confirm_window(ledger, [answer(ledger, batch)], "operator-1", LATER, day1)
    assert count(ledger, SettlementWindowEvent) == rows
    (batch,) = settle(ledger, day1)
    confirm_window(ledger, [answer(ledger, batch)], "operator-1", LATER)
    with pytest.raises(TransitionRefused, match="is SETTLED: cannot settle; it accepts nothing"):
        settle(ledger, day1)
    assert count(ledger, SettlementWindowEvent) == rows + 2


def test_abort_then_settle_again_is_a_new_attempt_and_the_old_answer_is_refused(ledger):
    (day1,) = closed(ledger, DAY1)
    (first,) = settle(ledger, day1)
    aborted = abort_window(ledger, day1, "the RTGS never answered", "operator-1", LATER)
    assert (aborted.state, aborted.attempt) == (WindowState.ABORTED, 1)
    (second,) = settle(ledger, day1)
    assert second.attempt == 2 and second.message_id != first.message_id
    late = confirm_window(ledger, [answer(ledger, first)], "operator-1", LATER)
    assert not late.ok
    assert any("not this window's instruction" in d for d in late.differences)
    assert confirm_window(ledger, [answer(ledger, second)], "operator-1", LATER).ok
    with ledger.connect() as conn:
        events = [r.event.value for r in window_rows(conn, day1)[day1]]
    assert events == ["close", "settle", "abort", "settle", "confirm"]


def test_lifecycle_rows_and_settled_nets_cannot_be_changed(ledger):
    (day1,) = closed(ledger, DAY1)
    (batch,) = settle(ledger, day1)
    confirm_window(ledger, [answer(ledger, batch)], "operator-1", LATER)
    for table in ("settlement_window_events", "window_settlements"):
        for statement in (f"UPDATE {table} SET window_label = 'x'", f"DELETE FROM {table}"):
            with pytest.raises(DBAPIError, match="append-only"), ledger.begin() as conn:
                conn.execute(text(statement))
    assert count(ledger, WindowSettlement) == len(batch.lines)


# -- the confirmation checked whole, through the command ------------------------------------


def cli_env(url: str, tmp_path: Path) -> dict[str, str]:
    return {"SAKK_DATABASE_URL": url, "SAKK_DATA_DIR": str(tmp_path), "SAKK_LOG_LEVEL": "WARNING",
            "SAKK_KAFKA_BOOTSTRAP_SERVERS": ""}  # fmt: skip


def run(env: dict[str, str], *args: str) -> tuple[int, Any]:
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    try:
        return result.exit_code, json.loads(result.output)
    except json.JSONDecodeError:
        return result.exit_code, result.output


def wrong_lines(kind: str, batch: SettlementBatch, other: SettlementBatch) -> tuple[str, Any]:
    """An answer differing from ``batch`` in one way: its instruction id and its lines."""
    lines = list(answer_lines(batch))
    if kind == "missing bank":
        return batch.message_id, lines[1:]
    if kind == "wrong amount":
        first = lines[0]
        return batch.message_id, [AnswerLine(first.bank, first.net_minor + 1, "MAD"), *lines[1:]]
    return other.message_id, answer_lines(other)  # wrong window: the other window's answer


@pytest.mark.parametrize("kind", ["missing bank", "wrong amount", "wrong window"])
def test_a_confirmation_that_differs_is_refused_whole_with_every_difference(
    ledger, database_url, tmp_path, kind
):
    env = cli_env(database_url, tmp_path)
    for day in ("2026-11-24", "2026-11-25"):
        code, out = run(env, "settlement", "close", "--window", day, "--delay-s", "0",
                        "--no-publish", "--by", "operator-1", "--json")  # fmt: skip
        assert code == 0 and out["state"] == "CLOSED", out
        code, out = run(env, "settlement", "settle", day, "--out", str(tmp_path / f"{day}.xml"),
                        "--no-publish", "--by", "operator-1", "--json")  # fmt: skip
        assert code == 0 and out["state"] == "SETTLING", out
        assert (tmp_path / f"{day}.xml").read_bytes().startswith(b"<?xml")
    with ledger.connect() as conn:
        batch, other = (window_batches(conn, d, 1)[0] for d in ("2026-11-24", "2026-11-25"))
    instruction, lines = wrong_lines(kind, batch, other)
    file = tmp_path / "answer.xml"
    file.write_bytes(build_answer(instruction, lines, parties(ledger), LATER))
    code, out = run(env, "settlement", "confirm", str(file), "--window", "2026-11-24",
                    "--no-publish", "--json")  # fmt: skip
    assert code == 1 and out["ok"] is False, out
    problems = " | ".join(out["problems"])
    if kind == "missing bank":
        assert f"bank {batch.lines[0].bank} is missing" in problems
        assert "sum to" in problems  # the remaining lines no longer sum to zero
    elif kind == "wrong amount":
        first = batch.lines[0]
        assert f"confirmed {first.net_minor + 1}, net is {first.net_minor}" in problems
        assert "sum to 1, not zero" in problems
    else:
        assert f"answers {other.message_id}, not this window's instruction" in problems
        assert len(out["problems"]) >= 2  # and every amount that differs, too
    with ledger.connect() as conn:
        assert window_state(conn, "2026-11-24").state is WindowState.SETTLING
        assert window_settlements(conn) == {}
    good = tmp_path / "good.xml"
    good.write_bytes(build_answer(batch.message_id, answer_lines(batch), parties(ledger), LATER))
    code, out = run(env, "settlement", "confirm", str(good), "--no-publish", "--json")
    assert code == 0 and out["state"] == "SETTLED" and out["window"] == "2026-11-24", out
    code, out = run(env, "settlement", "positions", "--json")
    with ledger.connect() as conn:
        positions = unsettled_nets(conn)
    shown = {(x["bank_code"], x["currency"]): x for x in out["positions"]}
    for line in batch.lines:  # settled: each bank's position came down by its net
        assert shown[(line.bank, "MAD")]["settled_minor"] == line.net_minor
        assert shown[(line.bank, "MAD")]["position_minor"] == positions.get((line.bank, "MAD"), 0)
    code, out = run(env, "settlement", "abort", "2026-11-24", "--reason", "late",
                    "--no-publish", "--json")  # fmt: skip
    assert code == 1 and "is SETTLED: cannot abort" in out["problems"][0], out
    with ledger.connect() as conn:  # every move taken is an audited action; refusals are not
        logged = [(a.action, a.target, a.actor) for a in list_actions(conn)]
        settled = json.loads(list_actions(conn, action="window.confirm")[0].new_value or "{}")
    assert logged == [
        ("window.close", "window 2026-11-24", "operator-1"),
        ("window.settle", "window 2026-11-24", "operator-1"),
        ("window.close", "window 2026-11-25", "operator-1"),
        ("window.settle", "window 2026-11-25", "operator-1"),
        ("window.confirm", "window 2026-11-24", logged[-1][2]),
    ]
    assert settled["state"] == "SETTLED" and len(settled["settled"]) == len(batch.lines)


def test_the_windows_events_replay_to_the_ledgers_states(broker, settings_factory, sqlite_url):
    engine = build_ledger(sqlite_url, three_days())
    settings = settings_factory(broker.bootstrap_servers, sqlite_url)
    day1, day2 = closed(engine, DAY1, DAY2)
    (batch,) = settle(engine, day1)
    confirm_window(engine, [answer(engine, batch)], "operator-1", LATER)
    settle(engine, day2)
    abort_window(engine, day2, "refused by the RTGS", "operator-1", LATER)
    with engine.connect() as conn:
        rows = window_rows(conn)
        ledger_states = {label: r[-1].record for label, r in rows.items()}
    for label in (day1, day2):
        publish_transitions(settings, rows[label])
    publish_transitions(settings, rows[day1])  # a re-publication counts once
    replayed = replay_states(read_transition_events(settings))
    assert replayed.events == 6 and not replayed.problems
    assert state_differences(replayed.states, ledger_states) == []
    assert replayed.states[day2].state is WindowState.ABORTED
    env = {
        **cli_env(sqlite_url, Path(settings.data_dir)),
        "SAKK_TOPIC_PREFIX": settings.topic_prefix,
        "SAKK_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
    }
    code, out = run(env, "audit", "verify", "--windows-from-topic", "--format", "json")
    assert code == 0 and out["summary"]["settled_windows"] == 1, out
    code, out = run(
        env,
        "settlement",
        "settle",
        day2,
        "--out",
        str(Path(settings.data_dir) / "x.xml"),
        "--no-publish",
        "--json",
    )
    assert code == 0 and out["attempt"] == 2, out
    code, out = run(env, "audit", "verify", "--windows-from-topic", "--format", "json")
    assert code == 1 and out["settlement_problems"] == [
        {"problem": f"window {day2}: events give ABORTED/1, the ledger SETTLING/2"}
    ], out
    engine.dispose()


def test_a_close_waits_its_delay_and_records_when_it_was_asked_for(ledger, database_url, tmp_path):
    env = cli_env(database_url, tmp_path)
    before = datetime.now(UTC)
    code, out = run(env, "settlement", "close", "--window", "2026-11-24", "--delay-s", "1",
                    "--no-publish", "--by", "operator-1", "--json")  # fmt: skip
    assert code == 0, out
    closed_at = datetime.fromisoformat(out["closed_at"])
    requested_at = datetime.fromisoformat(out["requested_at"])
    assert before <= requested_at and closed_at - requested_at >= timedelta(seconds=1)
    with ledger.connect() as conn:
        (row,) = window_rows(conn, "2026-11-24")["2026-11-24"]
    assert row.details.actor == "operator-1" and row.details.requested_at is not None


def test_the_lifecycle_tables_come_with_0016_and_go_with_its_downgrade(database_url):
    tables = {"settlement_window_events", "window_settlements"}
    upgrade(database_url)
    engine = make_engine(database_url)
    assert tables <= set(inspect(engine).get_table_names())
    command.downgrade(alembic_config(database_url), "0014_ops")
    assert not tables & set(inspect(engine).get_table_names())
    upgrade(database_url)
    with engine.begin() as conn:  # the guards came back with the tables
        conn.execute(text("INSERT INTO window_settlements VALUES ('d', '007', 'MAD', 1, :t)"),
                     {"t": LATER})  # fmt: skip
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text("DELETE FROM window_settlements"))
    engine.dispose()


def test_two_racing_moves_of_one_window_let_one_in(postgres_url):
    """Both read the window CLOSED; the second waits on the first's row, then is refused."""
    engine = build_ledger(postgres_url, three_days())
    (day1,) = closed(engine, DAY1)
    outcome: list[BaseException | None] = []

    def second() -> None:
        try:
            with engine.begin() as conn:
                record_transition(conn, day1, WindowEvent.SETTLE, BY, LATER)
            outcome.append(None)
        except TransitionRefused as exc:
            outcome.append(exc)

    with engine.begin() as conn:
        record_transition(conn, day1, WindowEvent.SETTLE, BY, LATER)
        racer = threading.Thread(target=second)
        racer.start()  # it reads the window CLOSED (ours is not committed), then waits on
        racer.join(timeout=1.0)  # the row number ours holds: still running
        assert racer.is_alive()
    racer.join(timeout=30)
    assert not racer.is_alive() and len(outcome) == 1
    assert isinstance(outcome[0], TransitionRefused), outcome
    with engine.connect() as conn:
        assert [r.event for r in window_rows(conn, day1)[day1]] == [
            WindowEvent.CLOSE,
            WindowEvent.SETTLE,
        ]
    engine.dispose()


def test_audit_verify_finds_a_settled_window_changed_and_a_rewritten_transition(ledger):
    (day1,) = closed(ledger, DAY1)
    (batch,) = settle(ledger, day1)
    assert confirm_window(ledger, [answer(ledger, batch)], "operator-1", LATER).ok
    with ledger.begin() as conn:  # an insider moves one centime of day 1 and edits a row
        drop_append_only_guard(conn)
        conn.execute(text(
            "UPDATE ledger_entries SET amount_minor = amount_minor - 1 WHERE id = "
            "(SELECT min(id) FROM ledger_entries WHERE account_number LIKE '%-SETTLEMENT-MAD')"
        ))  # fmt: skip
        if conn.dialect.name == "sqlite":
            conn.execute(text("DROP TRIGGER settlement_window_events_no_update"))
        else:
            conn.execute(text("DROP TRIGGER settlement_window_events_append_only "
                              "ON settlement_window_events"))  # fmt: skip
        conn.execute(text("UPDATE settlement_window_events SET actor = 'someone' WHERE seq = 2"))
    with ledger.connect() as conn:
        problems = verify(conn).settlement.problems
    assert f"window {day1} transition 2: its hash does not cover its content (it was changed)" in (
        problems
    )
    changed = [p for p in problems if p.startswith(f"settled window {day1} bank ")]
    assert changed and "the ledger now gives" in changed[0], problems


def test_an_unusable_confirmation_file_is_refused_with_its_problem(ledger):
    (day1,) = closed(ledger, DAY1)
    (batch,) = settle(ledger, day1)
    answers = read_answers([("garbage.xml", b"<not-a-pacs002/>")], parties(ledger))
    result = confirm_window(ledger, answers, "operator-1", LATER)
    assert not result.ok and result.label == day1
    assert result.differences[0].startswith("garbage.xml: not a usable pacs.002")
    assert f"no confirmation answers instruction {batch.message_id}" in result.differences[1]
    with ledger.connect() as conn:
        assert window_state(conn, day1).state is WindowState.SETTLING
