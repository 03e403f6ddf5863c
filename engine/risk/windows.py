"""A settlement window's lifecycle, as data, and the rule that puts a payment in a window.

Each window goes through these states; every move is an event on a topic and a row that
never changes afterwards, so the current state is the last row's::

    OPEN --close--> CLOSED --settle--> SETTLING --confirm--> SETTLED
                                         |   ^
                                     abort   settle (a new attempt)
                                         v   |
                                        ABORTED

============ ========= ========== =========================================================
from         event     to         meaning
============ ========= ========== =========================================================
OPEN         close     CLOSED     no new payment enters; the nets are final
CLOSED       settle    SETTLING   the instruction (pacs.009) went to the settlement bank
SETTLING     confirm   SETTLED    its confirmation matched every net: positions come down
SETTLING     abort     ABORTED    the settlement bank refused or never answered
ABORTED      settle    SETTLING   a new instruction, a new attempt, a new message id
============ ========= ========== =========================================================

ABORTED is the state "from which it can be settled again": a window's nets never change
after it closes, so an abort keeps the window closed (its payments stay in it, its banks'
positions keep counting them) and only the attempt starts over. Each attempt has its own
instruction message id, so a late confirmation of an aborted attempt names the wrong
message and is refused. SETTLED is final. Any other move is refused with its reason.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

MAX_ATTEMPTS = 20  # settle attempts of one window before an operator must look at it
MAX_CLOSE_DELAY = timedelta(minutes=10)  # longer would hold a window open for nothing


class WindowState(StrEnum):
    OPEN = "OPEN"
    CLOSED = "CLOSED"
    SETTLING = "SETTLING"
    SETTLED = "SETTLED"
    ABORTED = "ABORTED"


class WindowEvent(StrEnum):
    CLOSE = "close"
    SETTLE = "settle"
    CONFIRM = "confirm"
    ABORT = "abort"


TRANSITIONS: dict[tuple[WindowState, WindowEvent], WindowState] = {
    (WindowState.OPEN, WindowEvent.CLOSE): WindowState.CLOSED,
    (WindowState.CLOSED, WindowEvent.SETTLE): WindowState.SETTLING,
    (WindowState.SETTLING, WindowEvent.CONFIRM): WindowState.SETTLED,
    (WindowState.SETTLING, WindowEvent.ABORT): WindowState.ABORTED,
    (WindowState.ABORTED, WindowEvent.SETTLE): WindowState.SETTLING,
}
FINAL = frozenset({WindowState.SETTLED})


@dataclass(frozen=True)
class WindowRecord:
    """A window as one lifecycle row leaves it: its id, its state, and how many times
    settling it was started. Rows are never changed: a transition makes the next one
    (named apart from ``engine.audit.windows.Window``, the window's span of time)."""

    window_id: str
    state: WindowState = WindowState.OPEN
    attempt: int = 0  # 1 at the first settle; each settle after an abort adds one


@dataclass(frozen=True)
class IllegalTransition:
    """A move the lifecycle does not allow: nothing is written."""

    window: WindowRecord
    event: WindowEvent
    reason: str


def allowed_events(state: WindowState) -> tuple[WindowEvent, ...]:
    """The events a window in ``state`` accepts, in declaration order."""
    return tuple(event for (source, event) in TRANSITIONS if source is state)


def transition(window: WindowRecord, event: WindowEvent) -> WindowRecord | IllegalTransition:
    """The window after ``event``, or why ``event`` is not allowed now."""
    target = TRANSITIONS.get((window.state, event))
    if target is None:
        accepted = ", ".join(allowed_events(window.state)) or "nothing: it is final"
        return IllegalTransition(
            window,
            event,
            f"window {window.window_id} is {window.state}: cannot {event}; it accepts {accepted}",
        )
    if event is WindowEvent.SETTLE:
        if window.attempt >= MAX_ATTEMPTS:
            return IllegalTransition(
                window,
                event,
                f"window {window.window_id} was instructed {window.attempt} times, the most "
                f"allowed: an operator must find out why before it is settled again",
            )
        return replace(window, state=target, attempt=window.attempt + 1)
    return replace(window, state=target)


# -- the close delay ---------------------------------------------------------------------


class Assignment(StrEnum):
    THIS_WINDOW = "this"
    NEXT_WINDOW = "next"


def check_close_delay(delay: timedelta) -> timedelta:
    """``delay`` when it is within bounds (checked at start-up), else ValueError."""
    if not timedelta(0) <= delay <= MAX_CLOSE_DELAY:
        raise ValueError(f"close delay {delay}: expected 0..{MAX_CLOSE_DELAY}")
    return delay


def closes_at(close_requested_at: datetime, delay: timedelta) -> datetime:
    """When the window actually closes: the request, plus the delay in-flight payments get."""
    return close_requested_at + check_close_delay(delay)


def may_close(now: datetime, close_requested_at: datetime, delay: timedelta) -> bool:
    """Whether the CLOSE event may be written: the delay after the request has passed."""
    return now >= closes_at(close_requested_at, delay)


def window_for(
    accepted_at: datetime, decided_at: datetime, close_requested_at: datetime, delay: timedelta
) -> Assignment:
    """The window a payment settles in, once a close of the current one was requested.

    ``accepted_at``: when the switch took the payment in (its first event, on the
    switch's clock, never the bank's); ``decided_at``: when settlement decides it. A
    payment taken in before the close was requested is *in flight*: it finishes in this
    window when decided within the delay after the request (the boundary included). One
    taken in at or after the request, or decided later than the delay, goes to the next
    window. Both times come from the events, so replay assigns the same window again.
    """
    if decided_at < accepted_at:
        raise ValueError(f"decided at {decided_at} before it was accepted at {accepted_at}")
    in_flight = accepted_at < close_requested_at
    in_time = decided_at <= closes_at(close_requested_at, delay)
    return Assignment.THIS_WINDOW if in_flight and in_time else Assignment.NEXT_WINDOW
