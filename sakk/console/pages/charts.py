"""The overview's bar chart, drawn on the server as SVG: payments per minute, stacked by
outcome. No script and no inline style (the console's Content-Security-Policy allows
neither): each bar is a ``<rect>`` whose class names its outcome's colour."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from engine.read.activity import MinuteCount

WIDTH, HEIGHT = 960, 220  # the SVG's user units; it scales to the page's width
TOP, BOTTOM, LEFT = 12, 24, 40  # room for the top label, the minute labels, the scale
MAX_MINUTES_DRAWN = 180
LABEL_EVERY_MINUTES = 10
COLOURED = ("SETTLED", "CAPTURED", "AUTHORIZED", "REJECTED", "FAILED")  # the rest: "other"


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    outcome: str  # the CSS class suffix: fill-SETTLED, ..., fill-other
    title: str  # what a pointer over the bar reads


@dataclass(frozen=True)
class Label:
    x: float
    text: str


@dataclass(frozen=True)
class Chart:
    bars: tuple[Bar, ...]
    labels: tuple[Label, ...]
    peak: int  # the most payments in one minute (the scale's top)
    totals: tuple[tuple[str, int], ...]  # per outcome over the span, for the legend
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    baseline: int = HEIGHT - BOTTOM


def outcome_class(state: str) -> str:
    return state if state in COLOURED else "other"


def minute_chart(counts: Iterable[MinuteCount], start: datetime, minutes: int) -> Chart:
    """Stacked bars for ``minutes`` minutes from ``start`` (a minute's start, UTC)."""
    if not 1 <= minutes <= MAX_MINUTES_DRAWN:
        raise ValueError(f"a chart of {minutes} minutes: expected 1..{MAX_MINUTES_DRAWN}")
    per_minute: dict[int, Counter[str]] = {}
    totals: Counter[str] = Counter()
    for c in counts:
        slot = int((c.minute - start) / timedelta(minutes=1))
        if 0 <= slot < minutes:
            per_minute.setdefault(slot, Counter())[c.state] += c.payments
            totals[c.state] += c.payments
    peak = max((sum(c.values()) for c in per_minute.values()), default=0)
    slot_width = (WIDTH - LEFT) / minutes
    usable = HEIGHT - TOP - BOTTOM
    bars: list[Bar] = []
    for slot, states in sorted(per_minute.items()):
        y = float(HEIGHT - BOTTOM)
        at = (start + timedelta(minutes=slot)).strftime("%H:%M")
        for state in sorted(states, key=_stack_order):
            height = usable * states[state] / peak
            y -= height
            x = LEFT + slot * slot_width + slot_width * 0.1
            title = f"{at} {state}: {states[state]}"
            bars.append(Bar(x, y, slot_width * 0.8, height, outcome_class(state), title))
    labels = tuple(
        Label(LEFT + slot * slot_width, (start + timedelta(minutes=slot)).strftime("%H:%M"))
        for slot in range(0, minutes, LABEL_EVERY_MINUTES)
    )
    ordered = tuple(sorted(totals.items(), key=lambda kv: _stack_order(kv[0])))
    return Chart(tuple(bars), labels, peak, ordered)


def _stack_order(state: str) -> tuple[int, str]:
    return (COLOURED.index(state) if state in COLOURED else len(COLOURED), state)
