"""A message that kills its consumer is found, handled alone, and quarantined.

A process can die handling a batch in ways no ``except`` sees: a segfault in compiled
decoding code, SIGKILL, the out-of-memory killer. Its offsets are then never committed,
and without this module the next start would die on the same message for ever, with
every other bank's payment behind it on that partition stuck.

So before a stage handles what it polled, it marks, per partition, the offsets it is
about to handle (``messages_in_hand``, in a short transaction of its own); the
transaction that commits the batch clears the mark. When a partition is polled again
from an offset at or before a mark still in hand, a process died handling those
offsets. The partition is then handled one message at a time up to the last offset of
the range that died, each message under its own mark. A message whose own mark (the
message alone in hand) finds :data:`MAX_DEATHS` deaths is dead-lettered ``poison``
without being run again, and the line goes on.

Why a mark in hand means a death, and not a rebalance or a clean stop:

- a clean stop (SIGTERM) finishes the batch in hand: its commit clears the mark. A stop
  while the database is down leaves it (nothing can be written then): one extra death
  at most, and a batch death only makes the partition go one message at a time;
- a partition moves to another instance only in a poll of its previous owner (the
  client's rebalance protocol revokes between polls), so the previous owner has
  committed or died: its mark is in hand at the new owner's first poll only if it died,
  or if it was expelled for exceeding ``max.poll.interval.ms`` while still working.
  That last case counts one death wrongly, never a poison: a poison needs
  :data:`MAX_DEATHS` deaths of the one message alone in hand;
- the owner's instance id is in the mark, and only that owner's commit clears it, so
  an expelled instance committing late never clears its successor's mark;
- a mark whose first offset is behind the offset polled (the partition was polled
  from further on) is not a death: someone got past those offsets.

The pure core (:func:`plan_partition`) decides from a mark and the offsets polled;
:class:`InHandLedger` reads and writes the marks.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, select

from engine.ledger.database import read_only
from engine.ledger.models import MessagesInHand, table_of
from engine.ledger.recorder import InHandCleared, InHandMarked, Recorder
from engine.pipeline.messages import RawMessage

MAX_DEATHS = 3  # deaths of one message alone in hand before it is quarantined unrun
OWNER_MAX_CHARS = 64  # messages_in_hand.owner is String(64)


@dataclass(frozen=True, slots=True)
class Mark:
    """What ``messages_in_hand`` says of one partition (first/last None: nothing in hand)."""

    first_offset: int | None
    last_offset: int | None
    deaths: int
    suspect_until: int | None
    owner: str

    @property
    def in_hand(self) -> bool:
        return self.first_offset is not None


@dataclass(frozen=True, slots=True)
class PartitionPlan:
    """What to do with one partition's polled offsets ``first``..``last``.

    ``last`` is the last offset to handle now (``first`` itself when alone); when
    ``poison_deaths`` is set the message at ``first`` is quarantined, not handled.
    """

    first: int
    last: int
    alone: bool
    deaths: int  # deaths of exactly this range in hand, so far
    suspect_until: int | None  # handle alone up to here
    died: bool  # this poll found a death
    poison_deaths: int | None = None

    def mark(self, owner: str) -> Mark:
        return Mark(self.first, self.last, self.deaths, self.suspect_until, owner)

    @property
    def suspect_after(self) -> int | None:
        """``suspect_until`` once this range is committed: None when it is passed."""
        if self.suspect_until is None or self.suspect_until <= self.last:
            return None
        return self.suspect_until


def plan_partition(
    previous: Mark | None, first: int, last: int, max_deaths: int = MAX_DEATHS
) -> PartitionPlan:
    """Decide how to handle polled offsets ``first``..``last`` given the partition's mark."""
    if first > last:
        raise ValueError(f"polled offsets {first}..{last}: first after last")
    if max_deaths < 1:
        raise ValueError(f"max_deaths={max_deaths} must be at least 1")
    suspect = previous.suspect_until if previous is not None else None
    if suspect is not None and suspect < first:
        suspect = None  # that range is behind us
    died = (
        previous is not None
        and previous.first_offset is not None
        and previous.last_offset is not None
        and first <= previous.first_offset
    )
    if not died:
        if suspect is None:
            return PartitionPlan(first, last, False, 0, None, False)
        return PartitionPlan(first, first, True, 0, suspect, False)
    assert previous is not None and previous.first_offset is not None  # died says so
    assert previous.last_offset is not None
    suspect = max(previous.last_offset, suspect if suspect is not None else -1)
    alone_died = previous.first_offset == previous.last_offset == first
    deaths = previous.deaths + 1 if alone_died else 0
    if deaths >= max_deaths:
        return PartitionPlan(first, first, True, deaths, suspect, True, poison_deaths=deaths)
    return PartitionPlan(first, first, True, deaths, suspect, True)


def poison_reason(deaths: int) -> str:
    return (
        f"killed its consumer {deaths} times while handled alone; quarantined without "
        "being handled again"
    )


@dataclass
class Unit:
    """Messages handled in one transaction, with the marks written before and cleared in it."""

    messages: list[RawMessage] = field(default_factory=list)
    marks: list[InHandMarked] = field(default_factory=list)
    clears: list[InHandCleared] = field(default_factory=list)
    poison: list[tuple[RawMessage, int]] = field(default_factory=list)  # (message, deaths)
    alone: bool = False
    died: list[tuple[str, int]] = field(default_factory=list)  # partitions a death was found on

    @property
    def partitions(self) -> dict[tuple[str, int], tuple[int, int]]:
        """First and last offset of each partition this unit handles or quarantines."""
        spans: dict[tuple[str, int], tuple[int, int]] = {}
        for m in [*self.messages, *(p for p, _ in self.poison)]:
            lo, hi = spans.get((m.topic, m.partition), (m.offset, m.offset))
            spans[(m.topic, m.partition)] = (min(lo, m.offset), max(hi, m.offset))
        return spans


def instance_id() -> str:
    """This process's id among a stage's instances (they may run on other hosts)."""
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"[:OWNER_MAX_CHARS]


class InHandLedger:
    """Reads the marks of polled partitions and plans units; writes marks before handling.

    Kafka-free: it takes the polled messages, grouped by partition in offset order.
    """

    def __init__(self, consumer: str, engine: Engine, owner: str | None = None) -> None:
        self.consumer = consumer
        self.engine = engine
        self.owner = owner or instance_id()
        self.recorder = Recorder()
        # Partitions whose mark this instance cleared itself and still owns: no read needed.
        self._clear: set[tuple[str, int]] = set()

    def forget(self, partitions: Sequence[tuple[str, int]] | None = None) -> None:
        """Partitions (all when None) that may have changed hands: read their marks again."""
        if partitions is None:
            self._clear.clear()
        else:
            self._clear.difference_update(partitions)

    def units(self, polled: dict[tuple[str, int], list[RawMessage]]) -> list[Unit]:
        """The units to handle, in order: each message alone in hand first, then the batch."""
        unknown = [tp for tp in polled if tp not in self._clear]
        marks = self._marks(unknown) if unknown else {}
        now = datetime.now(UTC)
        batch = Unit()
        units: list[Unit] = []
        for tp, messages in polled.items():
            plan = plan_partition(marks.get(tp), messages[0].offset, messages[-1].offset)
            marked = InHandMarked(self.consumer, tp[0], tp[1], plan.first, plan.last,
                                  plan.deaths, plan.suspect_until, self.owner, now)  # fmt: skip
            cleared = InHandCleared(self.consumer, tp[0], tp[1], self.owner, plan.suspect_after)
            if not plan.alone:
                batch.messages += messages
                batch.marks.append(marked)
                batch.clears.append(cleared)
                continue
            self._clear.discard(tp)
            alone = Unit(
                marks=[marked], clears=[cleared], alone=True, died=[tp] if plan.died else []
            )
            if plan.poison_deaths is not None:
                alone.poison.append((messages[0], plan.poison_deaths))
            else:
                alone.messages.append(messages[0])
            units.append(alone)
        if batch.messages:
            units.append(batch)
        return units

    def mark(self, unit: Unit) -> bool:
        """Write the unit's marks in one short transaction of their own, before handling it."""
        with self.engine.begin() as conn:
            self.recorder.record(conn, unit.marks)
        return True

    def committed(self, unit: Unit) -> None:
        """The unit's transaction (with its clears) committed: its partitions are clear."""
        for c in unit.clears:
            if c.suspect_until is None:
                self._clear.add((c.topic, c.partition))

    def _marks(self, partitions: Sequence[tuple[str, int]]) -> dict[tuple[str, int], Mark]:
        found: dict[tuple[str, int], Mark] = {}
        with read_only(self.engine).connect() as conn:
            for topic in sorted({t for t, _ in partitions}):
                wanted = [p for t, p in partitions if t == topic]
                found.update(_read_marks(conn, self.consumer, topic, wanted))
        return found


def _read_marks(
    conn: Connection, consumer: str, topic: str, partitions: list[int]
) -> dict[tuple[str, int], Mark]:
    t = table_of(MessagesInHand)
    rows = conn.execute(
        select(t).where(t.c.consumer == consumer, t.c.topic == topic, t.c.partition.in_(partitions))
    )
    return {
        (topic, int(r.partition)): Mark(
            r.first_offset, r.last_offset, int(r.deaths), r.suspect_until, str(r.owner)
        )
        for r in rows
    }
