"""Settlement windows: positions sum to zero, a closed window never changes, closing is an event."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from engine.audit.chain import event_anchors, verify
from engine.audit.exceptions import WindowError
from engine.audit.window_events import publish_close, read_closed_events
from engine.audit.windows import Window, all_window_reports, close_window, window_report
from engine.kafka.client import create_topics
from engine.ledger.models import Payment
from engine.read.reports import net_positions
from tests.factories import AMINA, KARIM, RAM, VIGNETTE_DGI, YOUSSEF, payment, switch_id
from tests.integration.test_audit_tamper import build_ledger, initiated
from tests.unit.test_postings import draft, write_with_positions
from tests.unit.test_postings import ledger as reference_ledger

pytestmark = pytest.mark.integration

DAY1 = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)


def three_days() -> list[dict[str, Any]]:
    """Interbank both ways, within one bank, and to the Treasury, over three days."""
    out = []
    for i in range(36):
        at = DAY1 + timedelta(hours=2 * i, minutes=7)
        if i % 4 == 0:
            out.append(payment(AMINA, KARIM, 1_000 + i, occurred_at=at))
        elif i % 4 == 1:
            out.append(payment(KARIM, AMINA, 300 + i, channel="MOBILE", occurred_at=at))
        elif i % 4 == 2:
            out.append(payment(YOUSSEF, RAM, 700 + i, payment_type="PURCHASE", occurred_at=at))
        else:
            out.append(
                payment(
                    YOUSSEF,
                    VIGNETTE_DGI,
                    200 + i,
                    channel="EGOV",
                    payment_type="EGOV",
                    egov_service="VIGNETTE",
                    occurred_at=at,
                )
            )
    return out


@pytest.fixture
def ledger(database_url: str):  # type: ignore[no-untyped-def]
    engine = build_ledger(database_url, three_days())
    yield engine
    engine.dispose()


@pytest.mark.parametrize("hours", [24, 6, 1])
def test_net_positions_sum_to_zero_per_currency_in_every_window(ledger, hours):
    with ledger.connect() as conn:
        reports = all_window_reports(conn, hours)
    assert len(reports) >= 3
    for report in reports:
        assert report.lines, report.window.label
        assert all(total == 0 for total in report.net_by_currency().values()), report.window.label


def test_daily_window_report_agrees_with_the_ledgers_net_positions(ledger):
    with ledger.connect() as conn:
        for day in range(3):
            window = Window(DAY1 + timedelta(days=day))
            ours = {
                (x.bank_code, x.currency): (
                    x.gross_debits_minor,
                    x.gross_credits_minor,
                    x.net_minor,
                )
                for x in window_report(conn, window).lines
            }
            theirs = {
                (x.bank_code, x.currency): (
                    x.gross_debits_minor,
                    x.gross_credits_minor,
                    x.net_minor,
                )
                for x in net_positions(conn, window.label)
            }
            assert ours == theirs and ours


def test_a_closed_window_never_changes_and_late_payments_go_to_the_next_open_one(database_url):
    engine = build_ledger(database_url, three_days())
    try:
        day1, day2 = Window(DAY1), Window(DAY1 + timedelta(days=1))
        with engine.connect() as conn:
            before = [x.as_dict() for x in window_report(conn, day1).lines]
            day2_before = {x.bank_code: x.net_minor for x in window_report(conn, day2).lines}
        closed = close_window(engine, day1, DAY1 + timedelta(days=1, hours=1))
        assert not closed.already_closed
        assert [r["net_minor"] for r in closed.report.recorded] == [x["net_minor"] for x in before]

        # A payment that occurred on day 1 but is settled after the close (a late bank).
        late = payment(AMINA, KARIM, 4_242, occurred_at=DAY1 + timedelta(hours=23))
        _settle_more(engine, database_url, [late])

        with engine.connect() as conn:
            assert (
                conn.execute(
                    Payment.__table__.select().where(Payment.payment_id == switch_id(late))
                )
                .one()
                .settlement_window
                == day1.label
            )
            assert [x.as_dict() for x in window_report(conn, day1).lines] == before
            assert window_report(conn, day1).carried_out_postings == 1
            day2_now = window_report(conn, day2)
            assert day2_now.closed is False
            expected = dict(
                day2_before,
                **{"007": day2_before["007"] - 4_242, "011": day2_before["011"] + 4_242},
            )
            assert {x.bank_code: x.net_minor for x in day2_now.lines} == expected
            assert sum(x.carried_in_postings for x in day2_now.lines) == 2  # both banks' legs
            assert all(
                t == 0 for r in all_window_reports(conn) for t in r.net_by_currency().values()
            )
            assert verify(conn).ok
        again = close_window(engine, day1, DAY1 + timedelta(days=3))
        assert again.already_closed
    finally:
        engine.dispose()


def test_a_window_is_closed_only_after_it_ends_unless_early(ledger):
    window = Window(DAY1 + timedelta(days=2))
    with pytest.raises(WindowError, match="early"):
        close_window(ledger, window, DAY1 + timedelta(days=2, hours=23))
    assert close_window(
        ledger, window, DAY1 + timedelta(days=2, hours=23), early=True
    ).report.closed


def test_window_length_is_fixed_by_the_first_close(ledger):
    close_window(ledger, Window(DAY1), DAY1 + timedelta(days=2))
    with pytest.raises(WindowError, match="24h"), ledger.connect() as conn:
        window_report(conn, Window(DAY1 + timedelta(hours=6), 6))


def test_closing_publishes_an_event_that_anchors_the_chain(broker, settings_factory, sqlite_url):
    settings = settings_factory(broker.bootstrap_servers, sqlite_url)
    create_topics(settings)
    engine = build_ledger(sqlite_url, three_days())
    try:
        result = close_window(engine, Window(DAY1), DAY1 + timedelta(days=1))
        publish_close(settings, result.report)
        publish_close(settings, result.report)  # re-publishing repeats the same event
        events = read_closed_events(settings)
        assert [e["event_id"] for e in events] == [result.report.close.event_id] * 2
        event = events[0]
        assert event["window"] == "2026-11-24"
        assert sum(p["net_minor"] for p in event["positions"]) == 0
        assert {p["bank_code"] for p in event["positions"]} == {"007", "011", "310"}
        assert event["chain_heads"] == result.report.close.heads_list()
        assert (event["chain_seq"], event["chain_hash"]) == (
            result.report.close.chain_seq,
            result.report.close.chain_hash,
        )
        anchors = [a for e in events for a in event_anchors(e, "topic")]
        with engine.connect() as conn:
            report = verify(conn, anchors)
            assert report.ok and report.anchors_checked == 1 + len(anchors)
    finally:
        engine.dispose()


def test_windows_closed_while_two_chains_advance_count_exactly_the_right_postings(database_url):
    """Each chain is measured against its own head at each close; a chain born after a
    close is wholly after it. Amounts are powers of two, so a sum names its postings."""
    engine = reference_ledger(database_url)
    day1, day2, day3 = (
        Window(DAY1),
        Window(DAY1 + timedelta(days=1)),
        Window(DAY1 + timedelta(days=2)),
    )
    on_day1, on_day2 = DAY1 + timedelta(hours=10), DAY1 + timedelta(days=1, hours=10)

    def post(*drafts: tuple[int, int, Any]) -> None:
        with engine.begin() as conn:
            planted = [draft(c, AMINA, KARIM, amount, at) for c, amount, at in drafts]
            write_with_positions(conn, planted)

    try:
        post((1, 1, on_day1), (2, 2, on_day1))
        first = close_window(engine, day1, day1.end).report
        post((1, 4, on_day1), (2, 8, on_day2), (3, 16, on_day1))  # 4, 16: late for day 1
        second = close_window(engine, day2, day2.end).report
        post((2, 32, on_day1), (1, 64, on_day2))  # late for day 1, then for day 2

        def paid_by_007(report: Any) -> int:
            return next(x.gross_debits_minor for x in report.lines if x.bank_code == "007")

        assert (paid_by_007(first), first.close.postings) == (1 + 2, 2)
        assert sorted(first.close.heads) == [0, 1, 2]  # chain 3 had no head at the close
        assert (paid_by_007(second), second.close.postings) == (8 + 4 + 16, 3)
        assert sorted(second.close.heads) == [0, 1, 2, 3]
        with engine.connect() as conn:
            reports = {r.window: r for r in all_window_reports(conn)}
            assert paid_by_007(reports[day1]) == 1 + 2
            assert reports[day1].carried_out_postings == 3  # 4, 16 and 32
            assert paid_by_007(reports[day2]) == 8 + 4 + 16
            assert reports[day2].carried_out_postings == 1  # 64
            assert paid_by_007(reports[day3]) == 32 + 64 and not reports[day3].closed
            assert all(not r.mismatches() for r in reports.values())
            report = verify(conn)
            assert report.ok, report.sections()
            assert (report.windows_checked, report.anchors_checked) == (2, 3 + 4)
    finally:
        engine.dispose()


def _settle_more(engine: Any, url: str, more: list[dict[str, Any]]) -> None:
    """Feed more payments to the same ledger through the stages (offsets after the first run)."""
    from engine.config import load_settings
    from engine.pipeline.messages import RawMessage
    from engine.pipeline.processor import BatchProcessor
    from engine.serialization import AvroCodec, SchemaRegistry
    from sakk.app import build_stage

    settings = load_settings(environ={}, database_url=url, topic_prefix="tamper")
    codec = AvroCodec(SchemaRegistry.from_dir(settings.schemas_dir))
    validator = BatchProcessor(build_stage("validator", settings), engine, codec, settings)
    settlement = BatchProcessor(build_stage("settlement", settings), engine, codec, settings)
    raw = [initiated(settings, codec, 1, i, r) for i, r in enumerate(more)]
    result = validator.process(raw)
    settlement.process(
        [
            RawMessage(m.topic, 1, i, m.key, m.value, 0)
            for i, m in enumerate(result.outgoing)
            if m.topic == settings.topic("validated")
        ]
    )
