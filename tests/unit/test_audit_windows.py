"""Settlement window arithmetic: labels, alignment, where a late posting counts; its event."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from engine.audit.exceptions import WindowError
from engine.audit.window_events import EVENT_TYPE, SCHEMA_FILE, closed_event, window_codec
from engine.audit.windows import Close, Window, WindowReport, effective_window, event_id_of
from engine.config import Settings
from engine.ledger.postings import ChainHead
from engine.serialization import AvroCodec, SchemaRegistry

DAY = datetime(2026, 11, 26, tzinfo=UTC)


def close(window: Window, seq: int, **other_chains: int) -> Close:
    """A close that recorded chain 0 at ``seq`` and, e.g. ``c1=5``, chain 1 at 5."""
    heads = {0: seq} | {int(name[1:]): s for name, s in other_chains.items()}
    return Close(
        window,
        window.end,
        {c: ChainHead(s, "0" * 64) for c, s in heads.items()},
        0,
        event_id_of(window),
    )


def test_a_daily_window_is_labelled_like_the_settlement_window_of_its_payments():
    window = Window.containing(datetime(2026, 11, 26, 23, 59, 59, tzinfo=UTC))
    assert window.label == "2026-11-26"
    assert (window.start, window.end) == (DAY, DAY + timedelta(days=1))
    assert window.next().label == "2026-11-27"


def test_a_window_is_found_from_a_time_in_any_zone_as_utc():
    casablanca_winter = timezone(timedelta(hours=1))
    moment = datetime(2026, 11, 27, 0, 30, tzinfo=casablanca_winter)  # 23:30 UTC the day before
    assert Window.containing(moment).label == "2026-11-26"
    assert Window.containing(moment, 6).label == "2026-11-26T18:00Z/6h"


def test_shorter_windows_align_on_midnight_and_parse_from_their_start_or_label():
    window = Window.parse("2026-11-26T06:00", 6)
    assert window.label == "2026-11-26T06:00Z/6h"
    assert Window.parse(window.label, 6) == window
    with pytest.raises(WindowError, match="not the start"):
        Window.parse("2026-11-26T07:00", 6)
    with pytest.raises(WindowError, match="expected one of"):
        Window(DAY, 5)
    with pytest.raises(WindowError, match="--window-hours"):
        Window.parse("2026-11-26T06:00Z/6h", 12)


def test_a_posting_written_before_the_close_counts_in_its_own_window():
    day1 = Window(DAY)
    assert effective_window(day1, 0, 100, {day1.label: close(day1, 100)}) == day1


def test_a_posting_written_after_the_close_counts_in_the_next_open_window():
    day1, day2, day3 = Window(DAY), Window(DAY + timedelta(days=1)), Window(DAY + timedelta(days=2))
    closes = {day1.label: close(day1, 100), day2.label: close(day2, 200)}
    assert effective_window(day1, 0, 150, closes) == day2  # day 2 closed later, at 200
    assert effective_window(day1, 0, 250, closes) == day3  # both closed before it was written
    assert effective_window(day2, 0, 150, closes) == day2


def test_each_chain_is_measured_against_its_own_head_at_the_close():
    day1, day2 = Window(DAY), Window(DAY + timedelta(days=1))
    closes = {day1.label: close(day1, 100, c1=5), day2.label: close(day2, 200, c1=9)}
    assert effective_window(day1, 1, 5, closes) == day1
    assert effective_window(day1, 1, 6, closes) == day2  # chain 0's head (100) says nothing
    assert effective_window(day1, 0, 6, closes) == day1
    assert effective_window(day1, 1, 10, closes) == Window(DAY + timedelta(days=2))


def test_a_chain_the_close_did_not_know_was_written_after_it():
    day1, day2 = Window(DAY), Window(DAY + timedelta(days=1))
    closes = {day1.label: close(day1, 100), day2.label: close(day2, 200, c3=4)}
    assert effective_window(day1, 3, 1, closes) == day2
    assert effective_window(day1, 3, 5, closes) == Window(DAY + timedelta(days=2))


def closed_report() -> WindowReport:
    window = Window(DAY)
    heads = {0: ChainHead(40, "0a" * 32), 2: ChainHead(7, "2c" * 32)}
    position = {"bank_code": "007", "currency": "MAD", "gross_debits_minor": 500,
                "gross_credits_minor": 0, "net_minor": -500}  # fmt: skip
    report = WindowReport(window, close=Close(window, window.end, heads, 3, event_id_of(window)))
    report.recorded = [position]
    return report


def first_version_schema() -> dict[str, object]:
    """SettlementWindowClosed as it was before chain keys: no ``chain_heads``."""
    schema = json.loads((Settings().schemas_dir / SCHEMA_FILE).read_text())
    schema["fields"] = [f for f in schema["fields"] if f["name"] != "chain_heads"]
    return schema


def test_the_closed_event_carries_every_chain_head_and_chain_0_as_before():
    codec = window_codec(Settings())
    event = codec.decode(codec.encode(EVENT_TYPE, closed_event(closed_report()), validate=True))
    event = event.record
    assert (event["chain_seq"], event["chain_hash"]) == (40, "0a" * 32)
    assert event["chain_heads"] == [
        {"chain_id": 0, "chain_seq": 40, "chain_hash": "0a" * 32},
        {"chain_id": 2, "chain_seq": 7, "chain_hash": "2c" * 32},
    ]


def test_a_reader_of_the_first_version_reads_a_new_closed_event():
    old_reader = AvroCodec(SchemaRegistry({EVENT_TYPE: first_version_schema()}))
    old_reader.registry.add_approved((Settings().schemas_dir / SCHEMA_FILE).read_text())
    data = window_codec(Settings()).encode(EVENT_TYPE, closed_event(closed_report()))
    event = old_reader.decode(data).record
    assert "chain_heads" not in event
    assert (event["chain_seq"], event["chain_hash"]) == (40, "0a" * 32)


def test_a_closed_event_of_the_first_version_is_read_with_no_chain_heads():
    old_writer = AvroCodec(SchemaRegistry({EVENT_TYPE: first_version_schema()}))
    record = closed_event(closed_report())
    del record["chain_heads"]
    reader = window_codec(Settings())
    reader.registry.add_approved(first_version_schema())
    event = reader.decode(old_writer.encode(EVENT_TYPE, record, validate=True)).record
    assert event["chain_heads"] == [] and event["chain_seq"] == 40
