"""Reference data that changes while the switch runs: versions in force by event time.

An operator's change of a fee rule, a channel limit, a bank's delivery settings or its
net debit cap is a row of ``reference_versions`` (``engine.ops`` writes it): numbered in
the order announced, with ``effective_from``, at least the notice (``SAKK_REFERENCE_NOTICE_S``)
after it was announced. A decision about an event uses, for each item, the value of the
newest version in force at the event's time (``occurred_at``), else the value before the
item's first version, else the table loaded from the reference file. Replay loads the
same versions and so decides the same way.

A net debit cap and its alert percentage (kind ``cap``, item ``007/MAD``) are versioned
for their history and their author, not read by event time: settlement reads
``bank_limits`` with each batch, so a cap binds from the next batch on, at once
(``effective_from`` is when it was announced; see :mod:`engine.ops.limits`).

Running stages notice a new version without a restart (:class:`ReferenceRefresher`):
each batch's load reads the newest version number at most every
``SAKK_REFERENCE_REFRESH_MS``, and at once when the batch holds an event later than what
the last read is sure of. Why this is exact: a version announced after a read at wall
time W takes effect after W + notice; an event is at most ``SAKK_MAX_EVENT_SKEW_S``
ahead of the time the broker stored it, and the notice is checked at start to exceed the
skew plus two refresh intervals (one to be read, one for the announcing transaction to
commit, which ``engine.ops.reference`` bounds).
"""

from __future__ import annotations

import json
import time
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, insert, inspect, select

from engine.ledger.exceptions import ReferenceDataError
from engine.ledger.models import ReferenceVersion as VersionRow
from engine.ledger.models import table_of
from engine.ledger.reference import FeeSchedule, Limits, read_fee_schedule, read_limits
from engine.times import as_utc

FEE, LIMIT, BANK, CAP = "fee", "limit", "bank", "cap"
KINDS = (FEE, LIMIT, BANK, CAP)
MAX_VERSIONS = 10_000  # versions a stage holds in memory; more is refused at load

_V = table_of(VersionRow)


@dataclass(frozen=True)
class Version:
    """One change: ``item`` is the key as text (``WEB/PURCHASE/MAD``, ``ATM/MAD``, ``007``)."""

    version: int
    kind: str
    item: str
    old: Mapping[str, Any] | None
    new: Mapping[str, Any] | None
    announced_at: datetime
    effective_from: datetime


def fee_item(channel: str, payment_type: str, currency: str) -> str:
    return f"{channel}/{payment_type}/{currency}"


def limit_item(channel: str, currency: str) -> str:
    return f"{channel}/{currency}"


def cap_item(bank: str, currency: str) -> str:
    return f"{bank}/{currency}"


def has_versions_table(conn: Connection) -> bool:
    """Whether the ledger is migrated far enough to hold versions (a replay's live source)."""
    return bool(inspect(conn).has_table(_V.name))


def newest_version(conn: Connection) -> int:
    """The newest version number, 0 if none: the cheap check a stage makes."""
    return int(conn.execute(select(func.coalesce(func.max(_V.c.version), 0))).scalar_one())


def read_versions(conn: Connection, kinds: Iterable[str] = KINDS) -> list[Version]:
    rows = conn.execute(
        select(_V).where(_V.c.kind.in_(list(kinds))).order_by(_V.c.version).limit(MAX_VERSIONS + 1)
    ).all()
    if len(rows) > MAX_VERSIONS:
        raise ReferenceDataError(f"more than {MAX_VERSIONS} reference versions to hold")
    return [
        Version(
            r.version,
            r.kind,
            r.item,
            _loads(r.old_value),
            _loads(r.new_value),
            as_utc(r.announced_at),
            as_utc(r.effective_from),
        )  # fmt: skip
        for r in rows
    ]


@dataclass(frozen=True)
class ReferenceBook:
    """Fees and limits by event time: one (schedule, limits) per span between changes.

    ``epochs[i]`` is when span ``i + 1`` starts; span 0 is before every change.
    """

    version: int
    epochs: tuple[datetime, ...] = ()
    fees: tuple[FeeSchedule, ...] = (FeeSchedule(),)
    limits: tuple[Limits, ...] = (Limits(),)

    @classmethod
    def fixed(cls, fees: FeeSchedule, limits: Limits) -> ReferenceBook:
        """Reference data that never changes (tests, benchmarks)."""
        return cls(0, (), (fees,), (limits,))

    def fees_at(self, moment: datetime) -> FeeSchedule:
        return self.fees[bisect_right(self.epochs, moment)]

    def limits_at(self, moment: datetime) -> Limits:
        return self.limits[bisect_right(self.epochs, moment)]


def read_book(conn: Connection) -> ReferenceBook:
    """The tables and every version, read in one transaction."""
    versions = read_versions(conn, (FEE, LIMIT))
    return build_book(newest_version(conn), read_fee_schedule(conn), read_limits(conn), versions)


def build_book(
    version: int, fees: FeeSchedule, limits: Limits, versions: list[Version]
) -> ReferenceBook:
    """Spans of reference data: the tables before any change, then each change in force.

    Per item, versions take effect in the order announced (``engine.ops.reference``
    refuses a change earlier than one still pending), so the value before an item's first
    version is that version's ``old``.
    """
    fees, limits = _before_any(fees, limits, versions)
    ordered = sorted(versions, key=lambda v: (v.effective_from, v.version))
    epochs: list[datetime] = []
    fee_spans, limit_spans = [fees], [limits]
    for v in ordered:
        fees, limits = _applied(fees, limits, v.kind, v.item, v.new)
        if epochs and epochs[-1] == v.effective_from:
            fee_spans[-1], limit_spans[-1] = fees, limits
            continue
        epochs.append(v.effective_from)
        fee_spans.append(fees)
        limit_spans.append(limits)
    return ReferenceBook(version, tuple(epochs), tuple(fee_spans), tuple(limit_spans))


def _before_any(
    fees: FeeSchedule, limits: Limits, versions: list[Version]
) -> tuple[FeeSchedule, Limits]:
    seen: set[tuple[str, str]] = set()
    for v in sorted(versions, key=lambda v: v.version):
        if (v.kind, v.item) not in seen:
            seen.add((v.kind, v.item))
            fees, limits = _applied(fees, limits, v.kind, v.item, v.old)
    return fees, limits


def _applied(
    fees: FeeSchedule, limits: Limits, kind: str, item: str, value: Mapping[str, Any] | None
) -> tuple[FeeSchedule, Limits]:
    if kind == FEE:
        rules = dict(fees.rules)
        key3 = _fee_key(item)
        rules.pop(key3, None)
        if value is not None:
            rules[key3] = (value["fixed_minor"], value["rate_bps"], value.get("max_minor"))
        return replace(fees, rules=rules), limits
    if kind != LIMIT:
        raise ReferenceDataError(f"reference version of kind {kind!r}: no decision uses it")
    key2 = _limit_key(item)
    maxima, expiries = dict(limits.max_amount_minor), dict(limits.hold_expiry_s)
    maxima.pop(key2, None)
    expiries.pop(key2, None)
    if value is not None:
        maxima[key2] = value["max_amount_minor"]
        if value.get("hold_expiry_s") is not None:
            expiries[key2] = value["hold_expiry_s"]
    return fees, Limits(maxima, expiries)


def _fee_key(item: str) -> tuple[str, str, str]:
    channel, payment_type, currency = item.split("/")
    return channel, payment_type, currency


def _limit_key(item: str) -> tuple[str, str]:
    channel, currency = item.split("/")
    return channel, currency


@dataclass
class ReferenceRefresher:
    """A stage's reference data, read again when a new version is announced.

    ``current`` is called by each batch's load with the latest event time in the batch;
    it reads the newest version number at most every ``refresh_s``, or at once when an
    event is later than ``checked_at + notice - refresh`` (what the last read is sure of).
    """

    refresh_s: float
    notice_s: float
    clock: Callable[[], float] = time.time
    _book: ReferenceBook | None = field(default=None, init=False)
    _checked_at_s: float = field(default=0.0, init=False)  # clock seconds of the last read

    def current(self, conn: Connection, latest_event: datetime | None) -> ReferenceBook:
        now = self.clock()
        if self._book is None or self._stale(now, latest_event):
            version = newest_version(conn)
            if self._book is None or version != self._book.version:
                self._book = read_book(conn)
            self._checked_at_s = now
        return self._book

    def _stale(self, now: float, latest_event: datetime | None) -> bool:
        if now >= self._checked_at_s + self.refresh_s:
            return True
        sure_until = self._checked_at_s + self.notice_s - self.refresh_s
        return latest_event is not None and latest_event.timestamp() >= sure_until


def copy_versions(source: Connection, target: Connection) -> int:
    """Copy every version of ``source`` into ``target`` (a replay's ledger); returns how many."""
    rows = [dict(r._mapping) for r in source.execute(select(_V).order_by(_V.c.version))]
    if len(rows) > MAX_VERSIONS:
        raise ReferenceDataError(f"more than {MAX_VERSIONS} reference versions to copy")
    if rows:
        target.execute(insert(_V), rows)
    return len(rows)


def latest_occurred_at(records: Iterable[Mapping[str, Any]]) -> datetime | None:
    """The latest ``occurred_at`` of a batch's records (the times its decisions are made at)."""
    times = [r["occurred_at"] for r in records if isinstance(r.get("occurred_at"), datetime)]
    return max(times, default=None)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)
