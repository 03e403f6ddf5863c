"""Settlement window arithmetic: labels, alignment, where a late posting counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from engine.audit.exceptions import WindowError
from engine.audit.windows import Close, Window, effective_window, event_id_of

DAY = datetime(2026, 11, 26, tzinfo=UTC)


def close(window: Window, seq: int) -> Close:
    return Close(window, window.end, seq, "0" * 64, 0, event_id_of(window))


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
    assert effective_window(day1, 100, {day1.label: close(day1, 100)}) == day1


def test_a_posting_written_after_the_close_counts_in_the_next_open_window():
    day1, day2, day3 = Window(DAY), Window(DAY + timedelta(days=1)), Window(DAY + timedelta(days=2))
    closes = {day1.label: close(day1, 100), day2.label: close(day2, 200)}
    assert effective_window(day1, 150, closes) == day2  # day 2 closed later, at 200
    assert effective_window(day1, 250, closes) == day3  # both closed before it was written
    assert effective_window(day2, 150, closes) == day2
