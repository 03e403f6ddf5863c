"""Replay ``payments.initiated`` into a fresh, isolated ledger with the live stages' own code.

The replay reads with a group-less consumer (assign + seek: it joins no group and
commits no offsets), feeds each batch to a :class:`~engine.pipeline.processor.BatchProcessor`
around the validator stage, decodes the events that batch would have produced to
payments.validated (``PaymentValidated`` for payments, ``PaymentStepValidated`` for the
captures, voids, refunds and returns banks ask) and feeds them, in process, to a
second ``BatchProcessor`` around the settlement stage. Nothing is produced to any
topic; nothing is written but the target ledger, which must be new.

Expiries. The one input settlement has that comes from no bank is the expiry of a
hold: the switch's scheduler publishes it straight to payments.validated (sender
SAKK, step EXPIRE). The replay reads those, and only those, from that topic (the rest
of it is re-derived from payments.initiated) and merges them into settlement's input.
They keep the replay deterministic: an expiry's ``occurred_at`` is its hold's
``expires_at`` and its id is derived from the payment id, so it says the same thing
however often and whenever it was published, and no decision reads the clock.

Selections (see docs/auditing.md for what each means to an auditor):

- ``offsets``: ``[from, to)`` per partition, as given.
- ``record-time``: per partition, the records from the first whose Kafka record
  timestamp is at or after ``from`` up to the first at or after ``to``: a
  contiguous slice of the log, as the live validator saw it.
- ``occurred-at``: the slice widened by the validator's time bounds (an accepted
  payment's record time is within ``max_event_skew_s`` before and
  ``max_event_age_s`` after its ``occurred_at``), then only the events whose
  ``occurred_at`` is in ``[from, to)`` are replayed.

An expiry is replayed when its payment is in the replay ledger, whatever the selection.

Order. Within a partition the log fixes the order. Across partitions it does not:
a payee may spend a credit that arrived on another partition, and whether it was
there in time depended on how the live settlement consumer happened to interleave
its partitions. By default partitions are merged by record time, and each expiry
goes in by its own record time. With ``order_from`` the replay takes from a ledger
*only* the order in which its settlement stage decided (the order of its answers,
``emitted_events`` ids), never an outcome or an amount, and feeds the settlement
stage in that order, expiries included: any such order is a valid execution of the
topics, so a difference that remains is not an ordering effect.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from engine.audit.exceptions import ReplayTargetError
from engine.audit.offsets import OffsetLocator, PartitionRange, locate_by_offsets, locate_by_time
from engine.audit.reader import RangeReader
from engine.audit.replay_caps import CapTimeline
from engine.audit.urls import safe_url
from engine.config import Settings
from engine.domain.outcomes import DECIDED
from engine.events import (
    EVENTS,
    FUNDS_IN,
    FUNDS_OUT,
    PAYMENT_INITIATED,
    PAYMENT_STEP_VALIDATED,
    PAYMENT_VALIDATED,
    SWITCH,
)
from engine.kafka.client import Outgoing, make_consumer
from engine.ledger.database import is_sqlite, make_engine, upgrade
from engine.ledger.models import (
    Account,
    DeadLetter,
    EmittedEvent,
    HandledEvent,
    Payment,
    ReplayRun,
    StepKind,
)
from engine.ledger.queries import select_in
from engine.ledger.reference import load_reference_data, read_file
from engine.ledger.reference_versions import copy_versions, has_versions_table
from engine.ledger.schemas import LedgerApprovedSchemas
from engine.pipeline.dead_letters import SECURITY_KIND
from engine.pipeline.messages import RawMessage
from engine.pipeline.processor import BatchProcessor, BatchResult
from engine.serialization import AvroCodec, DecodeError, SchemaRegistry
from engine.times import from_ms, to_ms
from engine.topology import Topology

log = logging.getLogger(__name__)

SELECTIONS = ("offsets", "record-time", "occurred-at")
MAX_HELD_FOR_ORDER = 1_000_000  # validated events waiting for their turn in the given order


@dataclass(frozen=True)
class ReplayRequest:
    reference_file: Path
    target_url: str
    selection: str = "record-time"
    from_time: datetime | None = None
    to_time: datetime | None = None
    from_offsets: Mapping[int, int] = field(default_factory=dict)
    to_offsets: Mapping[int, int] = field(default_factory=dict)
    batch_size: int = 500
    order_from: str | None = None  # a ledger whose settlement order the replay follows

    def __post_init__(self) -> None:
        if self.selection not in SELECTIONS:
            raise ValueError(f"selection {self.selection!r}: expected one of {SELECTIONS}")
        if not 1 <= self.batch_size <= 10_000:
            raise ValueError(f"batch_size {self.batch_size} outside [1, 10000]")
        if self.from_time and self.to_time and self.from_time >= self.to_time:
            raise ValueError(
                f"--from {self.from_time.isoformat()} is not before --to {self.to_time.isoformat()}"
            )


@dataclass(frozen=True)
class ReplayPath:
    """The stages a replay chains, read from the topology: the one reading payments.initiated
    (the validator) and the one reading what it forwards (settlement), with the rule
    naming each forwarded event from its input (event type, event id) -> event id."""

    entry: str
    settling: str
    make_entry: Callable[[Settings], Any]
    make_settling: Callable[[Settings], Any]
    forwarded_id: Callable[[str, str], str]

    @classmethod
    def of(cls, topology: Topology) -> ReplayPath:
        entry, settling = topology.entry, topology.deciding
        if entry.forwarded_id is None:
            raise ValueError(f"{entry.name} declares no id rule for what it forwards")
        return cls(entry.name, settling.name, entry.for_replay, settling.for_replay,
                   entry.forwarded_id)  # fmt: skip


@dataclass
class ReplayReport:
    target_url: str
    topic: str
    selection: str
    ranges: list[PartitionRange]
    events_read: int = 0
    events_replayed: int = 0
    skipped_outside_occurred_range: int = 0
    record_time_outside_range: int = 0  # in the slice, yet stamped outside [from, to)
    timestamps_going_back: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)  # validator + settlement decisions
    dead_lettered: int = 0
    duplicates: int = 0
    probes: int = 0
    seconds: float = 0.0
    settlement_order: str = "record time"
    order_forced: int = 0  # events released out of the given order (the hold was full)
    signatures_verified: int = 0
    signature_failures: list[str] = field(default_factory=list)  # "partition/offset: reason"
    expiries_read: int = 0  # the switch's EXPIRE steps found on payments.validated
    expiries_replayed: int = 0  # those fed to settlement (their payment is in the replay)
    cap_versions_applied: int = 0  # the live ledger's cap changes, applied by record time

    @property
    def events_per_s(self) -> float:
        return self.events_replayed / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "target": safe_url(self.target_url), "topic": self.topic, "selection": self.selection,
            "events_read": self.events_read, "events_replayed": self.events_replayed,
            "skipped_outside_occurred_range": self.skipped_outside_occurred_range,
            "record_time_outside_range": self.record_time_outside_range,
            "timestamps_going_back": self.timestamps_going_back,
            **{o.summary_key: self.outcomes[o] for o in DECIDED},
            "expiries_read": self.expiries_read, "expiries_replayed": self.expiries_replayed,
            "cap_versions_applied": self.cap_versions_applied,
            "dead_lettered": self.dead_lettered, "duplicates": self.duplicates,
            "settlement_order": self.settlement_order, "order_forced": self.order_forced,
            "signatures_verified": self.signatures_verified,
            "signature_failures": len(self.signature_failures),
            "offset_probes": self.probes, "seconds": round(self.seconds, 3),
            "events_per_s": round(self.events_per_s, 1),
        }  # fmt: skip


def replay(
    settings: Settings,
    request: ReplayRequest,
    topology: Topology,
    progress: Callable[[ReplayReport], None] | None = None,
) -> ReplayReport:
    """Run the replay described by ``request`` through ``topology``'s stages (the validator,
    then settlement); raises before reading if the target is unfit."""
    check_target(settings, request.target_url)
    upgrade(request.target_url)
    engine = make_engine(request.target_url)
    try:
        _require_fresh(engine, request.target_url)
        load_reference_data(engine, read_file(request.reference_file))
        _copy_reference_versions(settings.ledger_url, engine)
        return _run(settings, request, engine, ReplayPath.of(topology), progress)
    finally:
        engine.dispose()


def _copy_reference_versions(live_url: str, target: Engine) -> None:
    """The live ledger's reference versions (fees and limits changed while running), so that
    each event is decided with the reference data in force at its time, as it was live."""
    database = make_url(live_url).database
    if is_sqlite(live_url) and not (database and Path(database).is_file()):
        log.warning("replay: no live ledger at %s: no reference versions copied", live_url)
        return
    live = make_engine(live_url, pool_size=1)
    try:
        with live.connect() as source, target.begin() as conn:
            if has_versions_table(source):
                log.info("replay: %d reference versions copied", copy_versions(source, conn))
    except OperationalError as exc:
        log.warning("replay: live ledger unreadable (%s): no reference versions copied", exc)
    finally:
        live.dispose()


def check_target(settings: Settings, target_url: str) -> None:
    """Refuse the live ledger as a target, however its URL is spelled."""
    if _same_database(target_url, settings.ledger_url):
        raise ReplayTargetError(
            f"the target {safe_url(target_url)} is the live ledger; "
            f"a replay writes only to a new ledger"
        )


def _same_database(a: str, b: str) -> bool:
    ua, ub = make_url(a), make_url(b)
    if is_sqlite(a) and is_sqlite(b):
        return (
            bool(ua.database)
            and Path(ua.database or "").resolve() == Path(ub.database or "").resolve()
        )
    return (ua.get_backend_name(), ua.host, ua.port or 5432, ua.database) == \
        (ub.get_backend_name(), ub.host, ub.port or 5432, ub.database)  # fmt: skip


def _require_fresh(engine: Engine, url: str) -> None:
    with engine.connect() as conn:
        used = {
            "payments": conn.execute(
                select(func.count()).select_from(Payment.__table__)
            ).scalar_one(),
            "accounts": conn.execute(
                select(func.count()).select_from(Account.__table__)
            ).scalar_one(),
            "replay runs": conn.execute(
                select(func.count()).select_from(ReplayRun.__table__)
            ).scalar_one(),
        }
    found = {k: v for k, v in used.items() if v}
    if found:
        raise ReplayTargetError(
            f"the target {safe_url(url)} is not a new ledger ({found}); "
            f"give a new SQLite file or an empty database"
        )


def replay_codec(settings: Settings) -> AvroCodec:
    """Reader schemas from disk, other approved writers' from the live ledger; writes nothing.

    Approvals are append-only, so the live ledger's approved set holds every schema the
    live validator could decode with.
    """
    live = make_engine(settings.ledger_url, pool_size=1)
    return AvroCodec(SchemaRegistry.from_dir(settings.schemas_dir), LedgerApprovedSchemas(live))


def _run(
    settings: Settings,
    request: ReplayRequest,
    engine: Engine,
    path: ReplayPath,
    progress: Callable[[ReplayReport], None] | None,
) -> ReplayReport:
    replay_settings = settings.replace(database_url=request.target_url)
    codec = replay_codec(settings)
    # Signatures are checked against the keys of the reference file given, judged at each
    # record's own time (the only time a replay has): see docs/auditing.md.
    validator = BatchProcessor(path.make_entry(replay_settings), engine, codec, replay_settings)
    settlement = BatchProcessor(path.make_settling(replay_settings), engine, codec, replay_settings)
    topic = PAYMENT_INITIATED.topic(settings)
    validated_topic = PAYMENT_VALIDATED.topic(settings)
    started_at, caps = datetime.now(UTC), CapTimeline.start(engine)
    consumer = make_consumer(settings, group_id=None, client_id="sakk-replay")
    try:
        locator = OffsetLocator(consumer, topic)
        ranges = _locate(settings, request, locator)
        report = ReplayReport(
            request.target_url, topic, request.selection, ranges, probes=locator.probes
        )
        expiries = read_expiries(settings, request, codec, validated_topic)
        report.expiries_read = len(expiries)
        hold = _order_hold(request, path, topic, ranges, report, expiries)
        ranked, feed = _route_expiries(expiries, hold, read_movements(settings, request, codec))
        early = [] if hold is None else hold.push_all((e.event_id, e.message) for e in ranked)
        reader = RangeReader(consumer, topic, ranges)
        window = _selected_window(request)
        started = time.perf_counter()
        _settle(settlement, early, request.batch_size, report, caps)
        for batch in reader.batches(request.batch_size):
            raw = [RawMessage.of(r) for r in batch]
            report.events_read += len(raw)
            raw = _select(raw, request, codec, report, window, hold, path.forwarded_id)
            if not raw:
                continue
            result = validator.process(raw)
            _tally(report, result)
            feed.know(_payments_made(result))
            forwarded = _validated_messages(result, validated_topic, codec)
            ready = _released(result, forwarded, hold, path)
            _settle(settlement, feed.merge(ready), request.batch_size, report, caps)
            report.events_replayed += len(raw)
            if progress:
                report.seconds = time.perf_counter() - started
                progress(report)
        if hold is not None:
            _settle(settlement, feed.merge(hold.flush()), request.batch_size, report, caps)
            report.order_forced = hold.forced
        _settle(settlement, feed.rest(), request.batch_size, report, caps)
        report.expiries_replayed = feed.released + len(ranked)
        report.seconds = time.perf_counter() - started
        report.timestamps_going_back = reader.stats.timestamps_going_back
        _check_signatures(engine, report)
    finally:
        consumer.close(autocommit=False)
    _record_run(engine, request, report, started_at)
    return report


@dataclass(frozen=True, slots=True)
class Expiry:
    """One EXPIRE step the switch published to payments.validated, where it sat."""

    event_id: str
    payment_id: str
    message: RawMessage  # its own topic, partition, offset and record time


def read_expiries(
    settings: Settings, request: ReplayRequest, codec: AvroCodec, topic: str
) -> list[Expiry]:
    """The switch's hold expiries on payments.validated, oldest record time first.

    The validated topic also carries every payment and bank step the validator
    forwarded; those the replay derives again from payments.initiated, so only the
    events the switch made itself are taken: ``sender_bank`` SAKK, step EXPIRE.
    A time selection starts at ``--from`` less the validator's skew bound (an
    authorization in range was recorded no earlier, and its expiry only after it);
    the end is the end of the log, since a hold expires days after it was placed.
    """
    start = request.from_time if request.selection != "offsets" else None
    if start is not None:
        start -= timedelta(seconds=settings.max_event_skew_s)
    consumer = make_consumer(settings, group_id=None, client_id="sakk-replay-expiries")
    try:
        ranges = locate_by_time(
            OffsetLocator(consumer, topic), to_ms(start) if start else None, None
        )
        found = []
        for record in RangeReader(consumer, topic, ranges).records():
            expiry = _expiry(codec, RawMessage.of(record))
            if expiry is not None:
                found.append(expiry)
        return found
    finally:
        consumer.close(autocommit=False)


def read_movements(settings: Settings, request: ReplayRequest, codec: AvroCodec) -> list[Expiry]:
    """The switch's other own input: the banks' liquidity movements (``FundsIn``,
    ``FundsOut`` on liquidity.movements), every one from the start of the topic (a bank's
    liquidity is the sum of them all), merged into settlement's input by record time as
    the expiries are."""
    consumer = make_consumer(settings, group_id=None, client_id="sakk-replay-movements")
    topic = FUNDS_IN.topic(settings)
    try:
        if topic not in (consumer.topics() or set()):
            return []  # a ledger from before liquidity movements
        ranges = locate_by_time(OffsetLocator(consumer, topic), None, None)
        found = []
        for record in RangeReader(consumer, topic, ranges).records():
            message = RawMessage.of(record)
            try:
                event = codec.decode(message.value) if message.value is not None else None
            except DecodeError:
                continue  # the live settlement dead-lettered it
            if event is not None and event.event_type in (FUNDS_IN.name, FUNDS_OUT.name):
                found.append(Expiry(str(event.record["event_id"]),
                                    str(event.record["payment_id"]), message))  # fmt: skip
        return found
    finally:
        consumer.close(autocommit=False)


def _expiry(codec: AvroCodec, message: RawMessage) -> Expiry | None:
    if message.value is None:
        return None
    try:
        event = codec.decode(message.value)
    except DecodeError:
        return None  # the live settlement dead-lettered it; it is no expiry
    r = event.record
    if event.event_type != PAYMENT_STEP_VALIDATED.name or r.get("sender_bank") != SWITCH:
        return None
    if r.get("step") != StepKind.EXPIRE:
        return None
    return Expiry(str(r["event_id"]), str(r["payment_id"]), message)


class ExpiryFeed:
    """Merges the switch's expiries into settlement's input by record time.

    Before each event handed to settlement go the expiries recorded at or before it
    (a forwarded event carries its initiated record's time); an expiry goes only once
    its payment is in the replay ledger, and one whose payment never came is left out:
    its hold was placed outside the replayed range.
    """

    def __init__(self, expiries: Iterable[Expiry]) -> None:
        self._waiting = deque(
            sorted(expiries, key=lambda e: (e.message.timestamp_ms, e.message.partition,
                                            e.message.offset))
        )  # fmt: skip
        self._early: dict[str, list[Expiry]] = {}  # due before their payment was replayed
        self._ready: list[Expiry] = []
        self._known: set[str] = set()  # payments in the replay ledger
        self.released = 0

    def know(self, payment_ids: Iterable[str]) -> None:
        """These payments are in the replay ledger now: their expiries may go."""
        for pid in payment_ids:
            self._known.add(pid)
            self._ready += self._early.pop(pid, [])

    def merge(self, messages: Sequence[RawMessage]) -> list[RawMessage]:
        out: list[RawMessage] = []
        for m in messages:
            out += self._due(m.timestamp_ms)
            out.append(m)
        return out

    def rest(self) -> list[RawMessage]:
        """Every expiry still waiting whose payment is in the replay, in record-time order."""
        return self._due(2**63 - 1)

    def _due(self, timestamp_ms: int) -> list[RawMessage]:
        while self._waiting and self._waiting[0].message.timestamp_ms <= timestamp_ms:
            expiry = self._waiting.popleft()
            if expiry.payment_id in self._known:
                self._ready.append(expiry)
            else:
                self._early.setdefault(expiry.payment_id, []).append(expiry)
        ready, self._ready = self._ready, []
        self.released += len(ready)
        return [e.message for e in ready]


def _route_expiries(
    expiries: Sequence[Expiry], hold: OrderHold | None, movements: Sequence[Expiry] = ()
) -> tuple[list[Expiry], ExpiryFeed]:
    """(the expiries the live settlement order places, the feed of the others).

    An expiry the live settlement decided waits for its turn in the order hold; any
    other (no ``--order-from``, or not decided live yet) goes in by record time, as every
    liquidity movement does (it waits for no payment).
    """
    ranked = [e for e in expiries if hold is not None and e.event_id in hold.rank]
    others = [e for e in expiries if hold is None or e.event_id not in hold.rank]
    feed = ExpiryFeed([*others, *movements])
    feed.know(m.payment_id for m in movements)
    return ranked, feed


def _payments_made(result: BatchResult) -> set[str]:
    """The payments a validator batch wrote (validated or rejected): they are in the ledger."""
    return {d.payment_id for i, d in result.handled
            if i.event_type == PAYMENT_INITIATED.name and d.payment_id}  # fmt: skip


def _released(
    result: BatchResult,
    forwarded: list[tuple[str, RawMessage]],
    hold: OrderHold | None,
    path: ReplayPath,
) -> list[RawMessage]:
    """What settlement may take now of a validator batch's forwarded events: all of them,
    or, in a given order, those whose turn came (with any that waited for them)."""
    if hold is None:
        return [m for _, m in forwarded]
    hold.skip(_not_forwarded(result, {eid for eid, _ in forwarded}, path))
    return [m for eid, message in forwarded for m in hold.push(eid, message)]


def _not_forwarded(result: BatchResult, forwarded: set[str], path: ReplayPath) -> list[str]:
    """Settlement inputs this batch will never give: the validator rejected or refused them."""
    ids = (path.forwarded_id(i.event_type, i.event_id) for i, _ in result.handled)
    return [eid for eid in ids if eid not in forwarded]


def _locate(
    settings: Settings, request: ReplayRequest, locator: OffsetLocator
) -> list[PartitionRange]:
    if request.selection == "offsets":
        return locate_by_offsets(locator, dict(request.from_offsets), dict(request.to_offsets))
    start, stop = request.from_time, request.to_time
    if request.selection == "occurred-at":
        start = start - timedelta(seconds=settings.max_event_skew_s) if start else None
        stop = stop + timedelta(seconds=settings.max_event_age_s) if stop else None
    return locate_by_time(locator, to_ms(start) if start else None, to_ms(stop) if stop else None)


def _selected_window(request: ReplayRequest) -> tuple[int | None, int | None]:
    return (to_ms(request.from_time) if request.from_time else None,
            to_ms(request.to_time) if request.to_time else None)  # fmt: skip


def _inside(ms: int, window: tuple[int | None, int | None]) -> bool:
    lo, hi = window
    return (lo is None or ms >= lo) and (hi is None or ms < hi)


def _select(
    raw: list[RawMessage],
    request: ReplayRequest,
    codec: AvroCodec,
    report: ReplayReport,
    window: tuple[int | None, int | None],
    hold: OrderHold | None = None,
    forwarded_id: Callable[[str, str], str] | None = None,
) -> list[RawMessage]:
    if request.selection == "offsets":
        return raw
    if request.selection == "record-time":
        report.record_time_outside_range += sum(
            1 for m in raw if not _inside(m.timestamp_ms, window)
        )
        return raw
    kept = []
    for m in raw:
        try:
            event = codec.decode(m.value)
            occurred = event.record.get("occurred_at")
            ms = to_ms(occurred) if isinstance(occurred, datetime) else m.timestamp_ms
        except DecodeError:
            event, ms = None, m.timestamp_ms  # no occurred_at: judged by record time
        if _inside(ms, window):
            kept.append(m)
            continue
        report.skipped_outside_occurred_range += 1
        if hold is not None and event is not None and forwarded_id is not None:
            declared = EVENTS.get(event.event_type)  # it will not come: nothing waits for it
            record = declared.as_switch_knows(event.record) if declared else event.record
            hold.skip([forwarded_id(event.event_type, str(record["event_id"]))])
    return kept


def _validated_messages(
    result: BatchResult, topic: str, codec: AvroCodec
) -> list[tuple[str, RawMessage]]:
    """What the validator would have produced to payments.validated, as settlement would read it.

    Payments (PaymentValidated) and the steps banks asked (PaymentStepValidated), each
    with its event id: the key of its place in a given settlement order. A forwarded
    event keeps the partition, offset and record time of the initiated record it answers
    (-1 for a re-sent duplicate whose source is in an earlier batch).
    """
    sources = {inbound.event_id: inbound for inbound, _ in result.handled}
    forwarded = []
    for message in result.outgoing:
        if message.topic != topic:
            continue
        record = codec.decode(message.value).record
        src = sources.get(record["causation_event_id"])
        forwarded.append(
            (
                str(record["event_id"]),
                _as_raw(
                    message,
                    src.partition if src else -1,
                    src.offset if src else -1,
                    src.timestamp_ms if src else 0,
                ),
            )
        )
    return forwarded


def _settle(
    settlement: BatchProcessor, messages: Sequence[RawMessage], size: int, report: ReplayReport,
    caps: CapTimeline,
) -> None:  # fmt: skip
    """Feed settlement in batches of ``size``, each with the caps in force at its latest
    record time (:mod:`engine.audit.replay_caps`)."""
    for start in range(0, len(messages), size):
        batch = messages[start : start + size]
        caps.advance(settlement.engine, from_ms(max(m.timestamp_ms for m in batch)))
        _tally(report, settlement.process(batch), validator_stage=False)
    report.cap_versions_applied = caps.applied


class OrderHold:
    """Releases settlement's input events in a given order of event ids; unknown ids pass.

    ``rank`` holds the in-scope events (payments, steps, expiries) in the order their
    settlement was decided. An event waits until every event ranked before it was
    released or is known never to come (the validator did not forward it in this replay).
    """

    def __init__(self, rank: Mapping[str, int], max_held: int = MAX_HELD_FOR_ORDER):
        self.rank = rank
        self.max_held = max_held
        self.forced = 0
        self._next = 0
        self._resolved: set[int] = set()
        self._held: list[tuple[int, int, RawMessage]] = []
        self._arrivals = 0

    def skip(self, event_ids: Iterable[str | None]) -> None:
        for eid in event_ids:
            r = self.rank.get(eid) if eid is not None else None
            if r is not None:
                self._resolved.add(r)

    def push(self, event_id: str, message: RawMessage) -> list[RawMessage]:
        r = self.rank.get(event_id)
        if r is None:
            return [message]
        self._arrivals += 1
        heapq.heappush(self._held, (r, self._arrivals, message))
        released = self._release()
        while len(self._held) > self.max_held:
            self.forced += 1
            rank, _, message = heapq.heappop(self._held)
            self._resolved.add(rank)
            released.append(message)
        return released

    def push_all(self, events: Iterable[tuple[str, RawMessage]]) -> list[RawMessage]:
        """Push events of the order read before the rest (the switch's expiries)."""
        return [m for event_id, message in events for m in self.push(event_id, message)]

    def _release(self) -> list[RawMessage]:
        out: list[RawMessage] = []
        while True:
            while self._next in self._resolved:
                self._resolved.discard(self._next)
                self._next += 1
            if self._held and self._held[0][0] <= self._next:
                rank, _, message = heapq.heappop(self._held)
                out.append(message)
                self._next = max(self._next, rank + 1)
                continue
            return out

    def flush(self) -> list[RawMessage]:
        """Whatever still waits (its predecessors never came), in the given order."""
        out = [m for _, _, m in sorted(self._held)]
        self._held.clear()
        return out


def settlement_order(
    conn: Any,
    path: ReplayPath,
    topic: str,
    ranges: Sequence[PartitionRange],
    expiries: Mapping[str, str] | None = None,
) -> dict[str, int]:
    """settlement input event id -> rank of its decision in a ledger, for the events in scope.

    In scope: what the validator forwarded of the events it read at ``ranges`` (payments
    and steps), and the ``expiries`` (event id -> payment id) of the payments among them.
    The rank is the order of settlement's answers (``emitted_events.id``: each decision
    emits one event, in decision order within a batch). Transitions would not do: a
    refused step writes none, yet where it fell decided what it was refused against.
    """
    h, em = HandledEvent.__table__, EmittedEvent.__table__
    inputs: set[str] = set()
    payments: set[str] = set()
    for r in ranges:
        if r.start >= r.end:
            continue
        rows = conn.execute(
            select(h.c.event_id, h.c.event_type, h.c.payment_id)
            .where(h.c.consumer == path.entry, h.c.topic == topic,
                   h.c.partition == r.partition, h.c.offset >= r.start, h.c.offset < r.end)
        )  # fmt: skip
        for row in rows:
            inputs.add(path.forwarded_id(row.event_type, row.event_id))
            if row.event_type == PAYMENT_INITIATED.name:
                payments.add(row.payment_id)
    inputs.update(eid for eid, pid in (expiries or {}).items() if pid in payments)
    query = (
        select(func.min(em.c.id).label("first"), em.c.source_event_id)
        .where(em.c.consumer == path.settling)
        .group_by(em.c.source_event_id)
    )
    decided = sorted((row.first, row.source_event_id)
                     for row in select_in(conn, query, em.c.source_event_id, inputs))  # fmt: skip
    return {eid: rank for rank, (_, eid) in enumerate(decided)}


def _order_hold(
    request: ReplayRequest,
    path: ReplayPath,
    topic: str,
    ranges: Sequence[PartitionRange],
    report: ReplayReport,
    expiries: Sequence[Expiry] = (),
) -> OrderHold | None:
    if request.order_from is None:
        return None
    engine = make_engine(request.order_from)
    try:
        with engine.connect() as conn:
            rank = settlement_order(
                conn, path, topic, ranges, {e.event_id: e.payment_id for e in expiries}
            )
    finally:
        engine.dispose()
    report.settlement_order = f"as decided in {safe_url(request.order_from)} ({len(rank)} events)"
    return OrderHold(rank)


def _as_raw(message: Outgoing, partition: int, offset: int, timestamp_ms: int) -> RawMessage:
    return RawMessage(message.topic, partition, offset, message.key, message.value, timestamp_ms)


def _tally(report: ReplayReport, result: BatchResult, validator_stage: bool = True) -> None:
    for _inbound, handled in result.handled:
        report.outcomes[handled.outcome] += 1
    if validator_stage:
        report.dead_lettered += result.dead_lettered
        report.duplicates += result.duplicates


def _check_signatures(engine: Engine, report: ReplayReport) -> None:
    """What the replay's gate found: each payment's signature verified, or why not."""
    d, p = DeadLetter.__table__, Payment.__table__
    with engine.connect() as conn:
        report.signatures_verified = conn.execute(
            select(func.count()).select_from(p).where(p.c.signer_bank.is_not(None))
        ).scalar_one()
        refused = conn.execute(
            select(d.c.source_partition, d.c.source_offset, d.c.reason)
            .where(d.c.kind == SECURITY_KIND)
            .order_by(d.c.source_partition, d.c.source_offset)
        ).all()
    report.signature_failures = [f"{part}/{offset}: {reason}" for part, offset, reason in refused]


def _record_run(
    engine: Engine, request: ReplayRequest, report: ReplayReport, started_at: datetime
) -> None:
    digest = hashlib.sha256(Path(request.reference_file).read_bytes()).hexdigest()
    with engine.begin() as conn:
        conn.execute(insert(ReplayRun), [{
            "topic": report.topic, "selection": request.selection,
            "from_time": request.from_time, "to_time": request.to_time,
            "ranges": json.dumps([r.as_dict() for r in report.ranges]),
            "reference_file": str(request.reference_file)[:500], "reference_sha256": digest,
            "events_read": report.events_read, "events_replayed": report.events_replayed,
            "started_at": started_at, "seconds": report.seconds,
        }])  # fmt: skip


@dataclass(frozen=True)
class RecordedRun:
    """A replay run as recorded in its ledger (what reconcile needs to scope the live side)."""

    topic: str
    selection: str
    from_time: datetime | None
    to_time: datetime | None
    ranges: list[dict[str, Any]]
    reference_sha256: str

    @property
    def from_beginning(self) -> bool:
        return all(r["from_beginning"] for r in self.ranges)


def recorded_runs(conn: Any) -> list[RecordedRun]:
    t = ReplayRun.__table__
    return [RecordedRun(r.topic, r.selection, r.from_time, r.to_time, json.loads(r.ranges),
                        r.reference_sha256)
            for r in conn.execute(select(t).order_by(t.c.id))]  # fmt: skip
