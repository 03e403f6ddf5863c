"""A settlement window's lifecycle in the ledger: one append-only row per transition.

The pure machine is :mod:`engine.risk.windows`; this module records its moves. Each
transition inserts the window's next row in ``settlement_window_events`` (numbered per
window, each row's hash covering the previous row's), so a window's state is its last
row and the rows of a window can be walked like a hash chain. Rows are never updated
or deleted: the database refuses both. Two racing transitions of one window both read
the same last row; the unique ``(window_label, seq)`` lets only the first commit.

A window closed before its lifecycle was recorded (a close row in ``settlement_windows``
and no event row) is CLOSED: its first transition writes the close's row first, with the
close's own time, so every window's rows start with a close.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, insert, select
from sqlalchemy.exc import IntegrityError

from engine.ledger.models import (
    SettlementWindow,
    SettlementWindowEvent,
    WindowSettlement,
    table_of,
)
from engine.ledger.positions import journal_settled
from engine.ledger.positions import settled_nets as settled_nets  # the one rule, re-exported
from engine.read.exceptions import WindowError
from engine.risk.windows import (
    IllegalTransition,
    WindowEvent,
    WindowRecord,
    WindowState,
    transition,
)
from engine.times import as_utc

GENESIS_HASH = "0" * 64
LEDGER_ACTOR = "ledger"  # the actor of a close recorded before the lifecycle was
MAX_ACTOR_CHARS = 64
MAX_EVENT_ROWS = 100_000  # rows read at once by an auditor: an operator looks first
LIFECYCLE_EVENT_NAMESPACE = uuid.UUID("5a4b0c1e-7d1f-4c2e-9a55-5a4b4b000004")


class TransitionRefused(WindowError):
    """The lifecycle does not allow this move now: nothing was written."""


@dataclass(frozen=True)
class Transition:
    """What a transition records beside its event: who, and what it refers to."""

    actor: str
    instruction_ids: tuple[str, ...] = ()
    document_sha256: str | None = None
    reason: str | None = None
    requested_at: datetime | None = None

    def __post_init__(self) -> None:
        if not 0 < len(self.actor) <= MAX_ACTOR_CHARS:
            raise ValueError(f"actor {self.actor!r}: 1..{MAX_ACTOR_CHARS} characters")


@dataclass(frozen=True)
class WindowEventRow:
    """One row of ``settlement_window_events``: a window after one transition."""

    window_label: str
    seq: int
    event: WindowEvent
    state: WindowState
    attempt: int
    details: Transition
    occurred_at: datetime
    prev_hash: str
    row_hash: str = ""

    @property
    def event_id(self) -> str:
        """The transition's id: the same window and seq, the same id (re-publishing repeats it)."""
        return str(uuid.uuid5(LIFECYCLE_EVENT_NAMESPACE, f"{self.window_label}/{self.seq}"))

    @property
    def record(self) -> WindowRecord:
        return WindowRecord(self.window_label, self.state, self.attempt)

    def content(self) -> dict[str, Any]:
        """What the row's hash covers: every column but the hashes and the row id."""
        d = self.details
        return {
            "window": self.window_label, "seq": self.seq, "event": self.event.value,
            "state": self.state.value, "attempt": self.attempt,
            "instruction_ids": list(d.instruction_ids), "document_sha256": d.document_sha256,
            "reason": d.reason, "actor": d.actor,
            "requested_at": _iso(d.requested_at), "occurred_at": _iso(self.occurred_at),
        }  # fmt: skip

    def computed_hash(self) -> str:
        text = json.dumps([self.prev_hash, self.content()], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def as_dict(self) -> dict[str, Any]:
        return {**self.content(), "event_id": self.event_id, "row_hash": self.row_hash,
                "prev_hash": self.prev_hash}  # fmt: skip

    def as_event(self) -> dict[str, Any]:
        """The ``SettlementWindowChanged`` record of this row."""
        d = self.details
        return {
            "event_id": self.event_id, "window": self.window_label, "seq": self.seq,
            "event": self.event.value, "state": self.state.value, "attempt": self.attempt,
            "instruction_ids": list(d.instruction_ids), "document_sha256": d.document_sha256,
            "reason": d.reason, "actor": d.actor, "occurred_at": self.occurred_at,
            "row_hash": self.row_hash, "prev_hash": self.prev_hash,
        }  # fmt: skip


def _iso(moment: datetime | None) -> str | None:
    # Microseconds dropped: what every backend and the event's timestamp-millis keep alike.
    if moment is None:
        return None
    return as_utc(moment).replace(microsecond=moment.microsecond // 1000 * 1000).isoformat()


def _row_of(r: Any) -> WindowEventRow:
    details = Transition(
        r.actor,
        tuple(json.loads(r.instruction_ids)),
        r.document_sha256,
        r.reason,
        as_utc(r.requested_at) if r.requested_at else None,
    )
    return WindowEventRow(
        r.window_label, int(r.seq), WindowEvent(r.event), WindowState(r.state), int(r.attempt),
        details, as_utc(r.occurred_at), r.prev_hash, r.row_hash,
    )  # fmt: skip


def window_rows(conn: Connection, label: str | None = None) -> dict[str, list[WindowEventRow]]:
    """Every window's rows in seq order (only ``label``'s when given)."""
    t = table_of(SettlementWindowEvent)
    query = select(t).order_by(t.c.window_label, t.c.seq).limit(MAX_EVENT_ROWS + 1)
    if label is not None:
        query = query.where(t.c.window_label == label)
    found: dict[str, list[WindowEventRow]] = defaultdict(list)
    rows = conn.execute(query).all()
    if len(rows) > MAX_EVENT_ROWS:
        raise WindowError(f"more than {MAX_EVENT_ROWS} window transitions: ask for one window")
    for r in rows:
        found[r.window_label].append(_row_of(r))
    return dict(found)


def _closed_at(conn: Connection, label: str) -> datetime | None:
    t = table_of(SettlementWindow)
    found = conn.execute(select(t.c.closed_at).where(t.c.label == label)).scalar_one_or_none()
    return as_utc(found) if found is not None else None


def window_state(conn: Connection, label: str) -> WindowRecord:
    """The window's state now: its last row's, CLOSED if only its close was recorded."""
    rows = window_rows(conn, label).get(label, [])
    if rows:
        return rows[-1].record
    closed = _closed_at(conn, label) is not None
    return WindowRecord(label, WindowState.CLOSED if closed else WindowState.OPEN)


def allowed_now(conn: Connection, label: str, event: WindowEvent) -> WindowRecord:
    """The window's state, once ``event`` is known to be allowed from it (else
    TransitionRefused): checked before the work the event needs is done."""
    record = window_state(conn, label)
    after = transition(record, event)
    if isinstance(after, IllegalTransition):
        raise TransitionRefused(after.reason)
    return record


def window_states(conn: Connection) -> dict[str, WindowRecord]:
    """Every window with a row or a recorded close, by label."""
    states = {label: rows[-1].record for label, rows in window_rows(conn).items()}
    t = table_of(SettlementWindow)
    for label in conn.execute(select(t.c.label)).scalars():
        states.setdefault(label, WindowRecord(label, WindowState.CLOSED))
    return states


def record_transition(
    conn: Connection, label: str, event: WindowEvent, details: Transition, now: datetime
) -> WindowEventRow:
    """Insert the window's row after ``event``; TransitionRefused when it is not allowed.

    Runs in the caller's transaction, so the row commits with what the move did (the
    close's positions, the settled nets) or not at all.
    """
    rows = window_rows(conn, label).get(label, [])
    if not rows and event is not WindowEvent.CLOSE:
        closed_at = _closed_at(conn, label)
        if closed_at is not None:  # a close recorded before the lifecycle: its row first
            rows = [_insert(conn, None, WindowRecord(label), WindowEvent.CLOSE,
                            Transition(LEDGER_ACTOR), closed_at)]  # fmt: skip
    previous = rows[-1] if rows else None
    record = previous.record if previous else WindowRecord(label)
    return _insert(conn, previous, record, event, details, now)


def _insert(
    conn: Connection,
    previous: WindowEventRow | None,
    record: WindowRecord,
    event: WindowEvent,
    details: Transition,
    now: datetime,
) -> WindowEventRow:
    after = transition(record, event)
    if isinstance(after, IllegalTransition):
        raise TransitionRefused(after.reason)
    row = WindowEventRow(
        record.window_id, previous.seq + 1 if previous else 1, event, after.state,
        after.attempt, details, now.astimezone(UTC),
        previous.row_hash if previous else GENESIS_HASH,
    )  # fmt: skip
    row = replace(row, row_hash=row.computed_hash())
    try:
        _insert_row(conn, row)
    except IntegrityError as exc:  # another move of this window committed first
        raise TransitionRefused(
            f"window {row.window_label}: another move was recorded at the same time as "
            f"this {event}; look at the window again"
        ) from exc
    return row


def _insert_row(conn: Connection, row: WindowEventRow) -> None:
    d = row.details
    conn.execute(insert(SettlementWindowEvent), [{
        "window_label": row.window_label, "seq": row.seq, "event": row.event.value,
        "state": row.state.value, "attempt": row.attempt,
        "instruction_ids": json.dumps(list(d.instruction_ids)),
        "document_sha256": d.document_sha256, "reason": d.reason, "actor": d.actor,
        "requested_at": d.requested_at, "occurred_at": row.occurred_at,
        "event_id": row.event_id, "prev_hash": row.prev_hash, "row_hash": row.row_hash,
    }])  # fmt: skip


# -- what settled windows settled ----------------------------------------------------------


def window_settlements(conn: Connection) -> dict[str, dict[tuple[str, str], int]]:
    """Each SETTLED window's settled nets by (bank, currency), position sign."""
    t = table_of(WindowSettlement)
    found: dict[str, dict[tuple[str, str], int]] = defaultdict(dict)
    for r in conn.execute(select(t).order_by(t.c.window_label, t.c.bank_code, t.c.currency)):
        found[r.window_label][(r.bank_code, r.currency)] = int(r.net_minor)
    return dict(found)


def record_settlements(
    conn: Connection, label: str, nets: Mapping[tuple[str, str], int], now: datetime
) -> None:
    """Write the window's settled nets (non-zero ones), in the settling transaction, and
    journal what each bank got back in its position's write order (``journal_settled``)."""
    rows = [{"window_label": label, "bank_code": bank, "currency": currency,
             "net_minor": net, "settled_at": now.astimezone(UTC)}
            for (bank, currency), net in sorted(nets.items()) if net]  # fmt: skip
    if rows:
        conn.execute(insert(WindowSettlement), rows)
        journal_settled(conn, label, nets, now.astimezone(UTC))


# -- the auditor's checks, and replay from the events --------------------------------------


def chain_problems(label: str, rows: Sequence[WindowEventRow]) -> list[str]:
    """How a window's rows break their chain or the lifecycle: seqs from 1 without a gap,
    each row's hash its content's, each linked to the previous, each move allowed."""
    problems: list[str] = []
    record, prev_hash = WindowRecord(label), GENESIS_HASH
    for expected_seq, row in enumerate(rows, start=1):
        where = f"window {label} transition {row.seq}"
        if row.seq != expected_seq:
            problems.append(f"{where}: expected transition {expected_seq} (one is missing)")
        if row.prev_hash != prev_hash:
            problems.append(f"{where}: does not follow the previous row's hash")
        if row.row_hash != row.computed_hash():
            problems.append(f"{where}: its hash does not cover its content (it was changed)")
        after = transition(record, row.event)
        if isinstance(after, IllegalTransition):
            problems.append(f"{where}: {after.reason}")
        elif (after.state, after.attempt) != (row.state, row.attempt):
            problems.append(f"{where}: records {row.state}/{row.attempt}, "
                            f"the lifecycle gives {after.state}/{after.attempt}")  # fmt: skip
        else:
            record = after
        prev_hash = row.row_hash
    return problems


@dataclass
class ReplayedWindows:
    """Window states rebuilt from the ``SettlementWindowChanged`` events, and differences."""

    states: dict[str, WindowRecord] = field(default_factory=dict)
    events: int = 0
    problems: list[str] = field(default_factory=list)


def replay_states(events: Iterable[Mapping[str, Any]]) -> ReplayedWindows:
    """Fold the events through the lifecycle, each window in seq order (duplicates, as a
    re-publication makes, count once); every refused move is a problem."""
    by_window: dict[str, dict[int, Mapping[str, Any]]] = defaultdict(dict)
    result = ReplayedWindows()
    for event in events:
        by_window[str(event["window"])].setdefault(int(event["seq"]), event)
    for label, events_of in sorted(by_window.items()):
        record = WindowRecord(label)
        for seq in sorted(events_of):
            result.events += 1
            after = transition(record, WindowEvent(events_of[seq]["event"]))
            if isinstance(after, IllegalTransition):
                result.problems.append(f"window {label} event {seq}: {after.reason}")
                continue
            record = after
        result.states[label] = record
    return result


def state_differences(
    replayed: Mapping[str, WindowRecord], ledger: Mapping[str, WindowRecord]
) -> list[str]:
    """Every window whose state from the events differs from the ledger's (OPEN if absent)."""
    problems = []
    for label in sorted(set(replayed) | set(ledger)):
        a = replayed.get(label, WindowRecord(label))
        b = ledger.get(label, WindowRecord(label))
        if (a.state, a.attempt) != (b.state, b.attempt):
            problems.append(f"window {label}: events give {a.state}/{a.attempt}, "
                            f"the ledger {b.state}/{b.attempt}")  # fmt: skip
    return problems
