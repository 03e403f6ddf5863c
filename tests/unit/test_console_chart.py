"""The overview's chart: bars stacked per minute by outcome, scaled to the busiest minute."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from engine.read.activity import MinuteCount
from sakk.console.pages.charts import HEIGHT, MAX_MINUTES_DRAWN, minute_chart

START = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


def at(minute: int) -> datetime:
    return START + timedelta(minutes=minute)


def test_a_minutes_outcomes_stack_into_one_bar_the_busiest_as_tall_as_the_chart():
    counts = [
        MinuteCount(at(0), "WEB", "SETTLED", 6),
        MinuteCount(at(0), "POS", "REJECTED", 2),
        MinuteCount(at(1), "WEB", "SETTLED", 4),
        MinuteCount(at(1), "ATM", "RETURNED", 1),  # no colour of its own: "other"
    ]
    chart = minute_chart(counts, START, 60)
    assert chart.peak == 8
    first = [b for b in chart.bars if b.title.startswith("09:00")]
    assert [b.outcome for b in first] == ["SETTLED", "REJECTED"]  # settled at the bottom
    assert sum(b.height for b in first) == pytest.approx(chart.baseline - 12)
    assert first[1].y == pytest.approx(chart.baseline - sum(b.height for b in first))
    second = [b for b in chart.bars if b.title.startswith("09:01")]
    assert [b.outcome for b in second] == ["SETTLED", "other"]
    assert sum(b.height for b in second) < sum(b.height for b in first)
    assert dict(chart.totals) == {"SETTLED": 10, "REJECTED": 2, "RETURNED": 1}
    assert all(0 <= b.y <= HEIGHT for b in chart.bars)


def test_counts_outside_the_span_are_left_out_and_an_empty_hour_draws_no_bar():
    chart = minute_chart([MinuteCount(at(60), "WEB", "SETTLED", 3)], START, 60)
    assert chart.bars == () and chart.peak == 0 and chart.totals == ()
    assert [label.text for label in chart.labels][:2] == ["09:00", "09:10"]


@pytest.mark.parametrize("minutes", [0, MAX_MINUTES_DRAWN + 1])
def test_the_span_drawn_is_bounded(minutes):
    with pytest.raises(ValueError, match=str(MAX_MINUTES_DRAWN)):
        minute_chart([], START, minutes)
