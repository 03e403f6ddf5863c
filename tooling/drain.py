"""One wait until a run has drained, for the demo, the benchmark and the chaos harness.

Drained means: every published payment answered or dead-lettered, every expected step
(the switch's expiries included) applied or refused, every notification finished (or,
for :attr:`Drain.delivered`, DELIVERED and announced by its PaymentNotified), and, when
the caller gives a lag probe, no message left uncommitted by any consumer group. The
wait is bounded: it returns the last state it saw at the deadline, and the caller says
what a run that did not drain means (the demo prints it, the benchmark refuses the
figure, the chaos harness counts a violation).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, func, select

from engine.domain.notifications import CAP_ALERT
from engine.domain.notifications import NotificationStatus as N
from engine.ledger.checks import FlowCounts, expected_notifications, flow_counts
from engine.ledger.database import read_only
from engine.ledger.models import Notification
from sakk.app import TOPOLOGY

Lag = Callable[[], dict[str, int]]  # uncommitted messages per "topic[partition]"


@dataclass(frozen=True)
class Drain:
    """What a run waits for."""

    published: int  # messages the banks published (each ends terminal or dead-lettered)
    steps: int = 0  # lifecycle steps expected to be recorded (expiries included)
    delivered: bool = False  # notifications DELIVERED and announced, not merely finished
    lag: Lag | None = None  # committed-offset lag of the consumer groups; None: not asked


@dataclass(frozen=True)
class DrainState:
    """One look at the ledger (and the consumer groups) against a :class:`Drain`."""

    counts: FlowCounts
    done: bool  # everything reached its end: stop waiting
    stuck: bool  # something ended where it must not (a notification given up): stop waiting
    text: str  # what is still awaited, for a report or a violation

    @property
    def finished(self) -> int:
        """Published messages and steps that reached their end (a progress figure)."""
        c = self.counts
        return c.terminal + c.dead_lettered + c.steps_applied + c.steps_refused


def drain_state(conn: Connection, drain: Drain) -> DrainState:
    """Where the run stands; the lag probe is asked only once the ledger is done."""
    counts = flow_counts(conn, TOPOLOGY.entry.name)
    expected, finished = expected_notifications(conn)
    steps = counts.steps_applied + counts.steps_refused
    all_terminal = (
        counts.terminal + counts.dead_lettered >= drain.published and steps >= drain.steps
    )
    text = (
        f"{counts.terminal} terminal + {counts.dead_lettered} dead-lettered of "
        f"{drain.published}; steps {steps}/{drain.steps}"
    )
    if drain.delivered:
        return _delivered_state(conn, drain, counts, expected, all_terminal, text)
    text += f"; notifications finished {finished}/{expected}"
    if not all_terminal or finished < expected:
        return DrainState(counts, False, False, text)
    return _lag_state(drain, counts, text)


def _delivered_state(
    conn: Connection,
    drain: Drain,
    counts: FlowCounts,
    expected: int,
    all_terminal: bool,
    text: str,
) -> DrainState:
    n = Notification.__table__
    # A bank's cap alert is no payment's notification: it counts for nothing expected,
    # though it must be delivered too (no notification of any kind left PENDING).
    statuses: Counter[str] = Counter(
        dict(conn.execute(
            select(n.c.status, func.count()).where(n.c.outcome != CAP_ALERT).group_by(n.c.status)
        ).all())
    )  # fmt: skip
    pending = conn.execute(
        select(func.count()).select_from(n).where(n.c.status == N.PENDING)
    ).scalar_one()
    announced = n.c.announced_at.is_not(None)
    unannounced = conn.execute(
        select(func.count()).select_from(n).where(n.c.status != N.PENDING, ~announced)
    ).scalar_one()
    delivered, given_up = statuses[N.DELIVERED], statuses[N.FAILED]
    text += f"; notifications DELIVERED {delivered}/{expected}" + (
        f", FAILED {given_up}" if given_up else ""
    )
    if given_up and all_terminal and not pending and delivered + given_up >= expected:
        # Nothing is left to wait for: a FAILED notification is never tried again here.
        return DrainState(counts, False, True, text + " (given up; nothing left pending)")
    if not all_terminal or delivered < expected or pending:
        return DrainState(counts, False, False, text + (f"; {pending} pending" if pending else ""))
    if unannounced:  # a kill between record and announce: the sweep re-sends them
        return DrainState(counts, False, False, text + f"; {unannounced} not yet announced")
    return _lag_state(drain, counts, text)


def _lag_state(drain: Drain, counts: FlowCounts, text: str) -> DrainState:
    lag = drain.lag() if drain.lag is not None else {}
    return DrainState(counts, not lag, False, text + (f"; uncommitted {lag}" if lag else ""))


def wait_drained(
    engine: Engine,
    drain: Drain,
    timeout_s: float,
    poll_s: float,
    on_poll: Callable[[DrainState], None] | None = None,
    pause: Callable[[float], None] = time.sleep,
) -> DrainState:
    """Look every ``poll_s`` until drained or stuck, or ``timeout_s`` passed: the last look.

    ``on_poll`` sees each look (progress; it may raise, e.g. when a consumer died);
    ``pause`` waits between looks (the chaos harness keeps its faults' clock ticking).
    Reads go through a read-only engine: never competing for SQLite's write lock.
    """
    reader = read_only(engine)
    deadline = time.monotonic() + timeout_s
    while True:
        with reader.connect() as conn:
            state = drain_state(conn, drain)
        if on_poll is not None:
            on_poll(state)
        if state.done or state.stuck or time.monotonic() >= deadline:
            return state
        pause(min(poll_s, max(0.0, deadline - time.monotonic())))
