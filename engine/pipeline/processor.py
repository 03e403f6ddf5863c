"""The batch processor: a polled batch in, committed effects and the messages to produce out.

Exactly-once effects rest on three rules, applied here once for every stage:

1. A batch's effects, the ids of the events it handled and the events it will emit
   are written in ONE database transaction (by the :class:`~engine.ledger.recorder.Recorder`).
2. Emitted events are produced only after that transaction commits; Kafka offsets are
   committed only after they are acknowledged (:mod:`engine.pipeline.service`).
3. A redelivered event (its id already handled) has no new effect: what it emitted is
   produced again from the outbox, with the same ids.

Kafka-free, so replay and tests drive the very same code as the live loop.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import IntegrityError

from engine import metrics
from engine.config import Settings
from engine.domain.outcomes import Outcome
from engine.ids import MalformedIdError
from engine.kafka.client import Outgoing
from engine.ledger.database import read_only
from engine.ledger.models import DeadLetter, HandledEvent
from engine.ledger.queries import select_in
from engine.ledger.recorder import DeadLettered, GuardFailed, Handled, Recorder, Write
from engine.pipeline.contract import Decision, Refusal, Retryable, Screen, Stage
from engine.pipeline.crash import CrashHook, MessageCrashHook, no_crash
from engine.pipeline.dead_letters import (
    POISON_KIND,
    REASON_MAX_CHARS,
    SECURITY_KIND,
    dead_letter_message,
)
from engine.pipeline.messages import Inbound, RawMessage
from engine.pipeline.outbox import Outbox
from engine.serialization import AvroCodec, DecodeError
from engine.trust.signing import Verdict

log = logging.getLogger(__name__)

REFUSALS_REMEMBERED = 10_000  # coordinates of refusals already counted in the metric
BATCH_ATTEMPTS = 2  # a racing instance's duplicate makes the first fail; the second sees it
# Another instance moved a bank's position row between this batch's snapshot and its write
# (GuardFailed): the batch is planned again from a fresh snapshot, up to this many times,
# after a short jittered pause that doubles from GUARD_PAUSE_S up to GUARD_PAUSE_MAX_S.
# Contention is never the input's fault, so it must not end in a dead letter while another
# try could pass; past this bound the batch is split as for any failure (a bug, not a race).
GUARD_ATTEMPTS = 8
GUARD_PAUSE_S = 0.005
GUARD_PAUSE_MAX_S = 0.2
MALFORMED_ID = "malformed_id"  # dead-letter kind of an id a bank supplied that the switch refuses


@dataclass
class BatchResult:
    outgoing: list[Outgoing] = field(default_factory=list)
    handled: list[tuple[Inbound, Decision]] = field(default_factory=list)
    dead_lettered: int = 0
    duplicates: int = 0
    event_ids: list[str] = field(default_factory=list)  # every event id, fresh or redelivered

    def add(self, other: BatchResult) -> None:
        self.outgoing += other.outgoing
        self.handled += other.handled
        self.dead_lettered += other.dead_lettered
        self.duplicates += other.duplicates
        self.event_ids += other.event_ids


class _NoContext:
    """The context of a batch with nothing fresh to decide: nothing is loaded for it."""

    def absorb(self, decision: Decision) -> None:
        raise AssertionError("a batch with nothing fresh decides nothing")


_NO_CONTEXT = _NoContext()


@dataclass(frozen=True, slots=True)
class _Plan:
    """A batch decided: the rows to write in one transaction, and what follows the commit."""

    writes: list[Write]
    result: BatchResult


@dataclass(frozen=True, slots=True)
class _Bad:
    """A message to dead-letter, and why."""

    message: RawMessage
    kind: str
    reason: str


@dataclass(slots=True)
class _Sorted:
    """A batch split from one snapshot: new events, copies to re-send, and dead letters."""

    bad: list[_Bad]
    fresh: list[Inbound] = field(default_factory=list)
    resend: list[Outgoing] = field(default_factory=list)
    duplicates: int = 0
    context: Any = None


class BatchProcessor:
    """Drives one :class:`~engine.pipeline.contract.Stage` over polled batches."""

    def __init__(
        self,
        stage: Stage[Any],
        engine: Engine,
        codec: AvroCodec,
        settings: Settings,
        crash: CrashHook = no_crash,
        crash_on_message: MessageCrashHook | None = None,
        on_committed: Sequence[Callable[[], None]] = (),
    ) -> None:
        self.stage = stage
        self.engine = engine
        self.codec = codec
        self.settings = settings
        self.crash = crash
        self.crash_on_message = crash_on_message  # the chaos harness's poison, off: None
        self.on_committed = tuple(on_committed)  # companions woken by a batch's commit
        self.dlq_topic = settings.topic("dlq")
        self.outbox = Outbox(stage.name, codec, settings)
        self.recorder = Recorder()
        self._refusals_counted: dict[tuple[str, int, int], None] = {}  # insertion-ordered

    def process(self, raw: Sequence[RawMessage], also: Sequence[Write] = ()) -> BatchResult:
        """Handle ``raw`` in partition order; raises :class:`Retryable` when it may work later.

        ``also``: rows to write in the batch's own transaction (the live loop's marks of
        what it had in hand, cleared by the commit that handles it).
        """
        try:
            result = self._process_batch(raw, also)
            self.stage.committed(self.engine)  # a fault here redelivers: duplicates only
            for wake in self.on_committed:
                wake()
        except Exception as exc:
            if Retryable.covers(exc):
                raise Retryable(exc) from exc
            raise
        self.crash("after_complete")
        return result

    def dead_letter(
        self, messages: Sequence[RawMessage], kind: str, reason: str, also: Sequence[Write] = ()
    ) -> BatchResult:
        """Dead-letter ``messages`` without reading them.

        A poison that killed its consumer, or the offsets of a record batch the client
        could not read (no bytes then: each offset is one dead letter, so the counts add up).
        """
        try:
            bad = [_Bad(m, kind, reason) for m in messages]
            return self._commit(self._plan([], bad, also))
        except Exception as exc:
            if Retryable.covers(exc):
                raise Retryable(exc) from exc
            raise

    def _process_batch(self, raw: Sequence[RawMessage], also: Sequence[Write] = ()) -> BatchResult:
        gate = self.stage.gate
        screen = gate.screen(self.engine) if gate is not None else None
        decoded, bad = self._decode(raw, screen)
        failure = self._commit_attempts(decoded, bad, also)
        if isinstance(failure, BatchResult):
            return failure  # committed
        if len(raw) == 1:
            reason = f"{type(failure).__name__}: {failure}"[:REASON_MAX_CHARS]
            return self._commit(self._plan([], [_Bad(raw[0], POISON_KIND, reason)], also))
        metrics.BATCHES_SPLIT.labels(self.stage.name).inc()
        log.warning(
            "%s: batch of %d failed (%r); handling one by one", self.stage.name, len(raw), failure
        )
        total = BatchResult()
        for message in raw:
            total.add(self._process_batch([message]))
        if also:
            self._commit(_Plan(list(also), BatchResult()))
        return total

    def _commit_attempts(
        self, decoded: list[Inbound], bad: Sequence[_Bad], also: Sequence[Write]
    ) -> BatchResult | Exception:
        """Plan and commit the batch, again after a race; the result, or the last failure."""
        duplicates = guarded = 0
        while True:
            try:
                return self._commit(self._plan(decoded, list(bad), also))
            except IntegrityError as exc:
                duplicates += 1  # another instance got there first: the retry sees its work
                if duplicates >= BATCH_ATTEMPTS:
                    return exc
            except GuardFailed as exc:
                guarded += 1  # a bank's row moved since the snapshot: plan on a fresh one
                if guarded >= GUARD_ATTEMPTS:
                    return exc
                pause = min(GUARD_PAUSE_S * 2**guarded, GUARD_PAUSE_MAX_S)
                time.sleep(random.uniform(pause / 2, pause))
            except Exception as exc:
                if Retryable.covers(exc):
                    raise
                return exc  # a bug in a rule, for some message of the batch

    def _decode(
        self, raw: Sequence[RawMessage], screen: Screen | None
    ) -> tuple[list[Inbound], list[_Bad]]:
        """Decode each message; a gated stage's security refusals come first, unread, then
        its ids are put in the namespace of the bank that signed it."""
        decoded: list[Inbound] = []
        bad: list[_Bad] = []
        for m in raw:
            if self.crash_on_message is not None:
                self.crash_on_message(m)
            verdict = screen.check_raw(m) if screen is not None else None
            if verdict is not None and not verdict.ok:
                bad.append(self._refused(m, verdict))
                continue
            if m.value is None:
                bad.append(_Bad(m, "undecodable", "empty message (tombstone)"))
                continue
            try:
                event = self.codec.decode(m.value)
            except DecodeError as exc:
                bad.append(_Bad(m, exc.kind, str(exc)[:REASON_MAX_CHARS]))
                continue
            record = event.record
            if screen is not None and verdict is not None:
                verdict = screen.check_record(verdict, m, event.event_type, record)
                if not verdict.ok:
                    bad.append(self._refused(m, verdict))
                    continue
                # From here on, the ids a bank supplied are in its namespace (engine.ids).
                switch_record = screen.switch_ids(verdict, event.event_type, record)
                if isinstance(switch_record, MalformedIdError):
                    bad.append(_Bad(m, MALFORMED_ID, str(switch_record)[:REASON_MAX_CHARS]))
                    continue
                record = switch_record
            evidence = verdict.evidence if verdict is not None else None
            decoded.append(Inbound(m, event.event_type, record, evidence))
        return decoded, bad

    def _refused(self, m: RawMessage, verdict: Verdict) -> _Bad:
        """A security refusal: dead-lettered with its reason, and nothing of it recorded."""
        refusal = str(verdict.refusal)
        coordinates = (m.topic, m.partition, m.offset)
        if coordinates not in self._refusals_counted:  # a retried batch sees it again
            self._refusals_counted[coordinates] = None
            if len(self._refusals_counted) > REFUSALS_REMEMBERED:
                del self._refusals_counted[next(iter(self._refusals_counted))]
            metrics.SECURITY_REFUSALS.labels(self.stage.name, verdict.claimed_signer, refusal).inc()
        return _Bad(m, SECURITY_KIND, f"{refusal}: {verdict.detail}"[:REASON_MAX_CHARS])

    def _plan(self, decoded: list[Inbound], bad: list[_Bad], also: Sequence[Write] = ()) -> _Plan:
        """Everything the batch will write and produce, read and decided off the write lock.

        A snapshot read, then decisions: nothing here blocks another stage (on SQLite
        the write lock is the database's). What it read can only have been changed
        meanwhile by another instance handling the same events, and then a unique key
        or a guarded update refuses the write, and the batch is planned again.
        """
        with read_only(self.engine).connect() as conn:
            sorted_ = self._sort(conn, decoded, bad)
        now = datetime.now(UTC)
        writes: list[Write] = list(also)
        outgoing: list[Outgoing] = []
        handled = self._decide(sorted_, now, writes, outgoing)
        for b in sorted_.bad:
            outgoing.append(self._dead_letter_rows(b, now, writes))
        result = BatchResult(
            # The copies of redelivered events first: they were consumed before the fresh
            # ones of the batch, and a payment's steps must stay behind it on the topic.
            outgoing=sorted_.resend + outgoing,
            handled=handled,
            dead_lettered=len(sorted_.bad),
            duplicates=sorted_.duplicates,
            event_ids=[i.event_id for i in decoded],
        )
        return _Plan(writes, result)

    def _sort(self, conn: Connection, decoded: list[Inbound], bad: list[_Bad]) -> _Sorted:
        """Split a batch, from one snapshot, into what is new and what was seen before."""
        dead = self._dead_letters_at(conn, [i.raw for i in decoded] + [b.message for b in bad])
        seen = self._handled(conn, [i.event_id for i in decoded])
        again = [_Bad(b.message, *dead[b.message.coordinates]) for b in bad
                 if b.message.coordinates in dead]  # fmt: skip
        sorted_ = _Sorted(bad=[b for b in bad if b.message.coordinates not in dead])
        sorted_.duplicates = len(again)
        redelivered: list[str] = []
        in_batch: set[str] = set()
        for inbound in decoded:
            if inbound.raw.coordinates in dead:  # refused before: its dead letter again
                again.append(_Bad(inbound.raw, *dead[inbound.raw.coordinates]))
                sorted_.duplicates += 1
            elif inbound.event_id in seen:
                redelivered.append(inbound.event_id)
                sorted_.duplicates += 1
            elif inbound.event_id in in_batch:
                sorted_.duplicates += 1  # the same event twice in one batch: its first counts
            else:
                in_batch.add(inbound.event_id)
                sorted_.fresh.append(inbound)
        sorted_.context = self.stage.load(conn, sorted_.fresh) if sorted_.fresh else _NO_CONTEXT
        copies = self.outbox.stored(conn, redelivered)
        sorted_.resend = copies + [self._dead_letter(b) for b in again]
        return sorted_

    def _decide(
        self, sorted_: _Sorted, now: datetime, writes: list[Write], outgoing: list[Outgoing]
    ) -> list[tuple[Inbound, Decision]]:
        """Decide each new event in order; a refusal joins the batch's dead letters."""
        handled: list[tuple[Inbound, Decision]] = []
        context = sorted_.context
        for inbound in sorted_.fresh:
            decision = self.stage.decide(inbound, context)
            if isinstance(decision, Refusal):
                reason = decision.reason[:REASON_MAX_CHARS]
                sorted_.bad.append(_Bad(inbound.raw, decision.kind, reason))
                continue
            context.absorb(decision)
            handled.append((inbound, decision))
            writes += decision.writes
            writes.append(_handled_row(self.stage.name, inbound, decision, now))
            for emit in decision.emits:
                message, row = self.outbox.encode(inbound.event_id, emit)
                outgoing.append(message)
                writes.append(row)
        return handled

    def _dead_letter_rows(self, b: _Bad, now: datetime, writes: list[Write]) -> Outgoing:
        """A dead letter's rows (handled, outbox, dead-lettered) and the message to produce."""
        m, name = b.message, self.stage.name
        message = self._dead_letter(b)
        writes.append(Handled(name, m.dead_letter_id, "undecodable", None, m.topic,
                              m.partition, m.offset, Outcome.DEAD_LETTERED, now))  # fmt: skip
        writes.append(self.outbox.row(m.dead_letter_id, m.dead_letter_id, None, message))
        writes.append(DeadLettered(name, m.topic, m.partition, m.offset, b.kind, b.reason,
                                   None, now))  # fmt: skip
        return message

    def _commit(self, plan: _Plan) -> BatchResult:
        """Write the plan in one short transaction: the only time the batch holds a lock."""
        with self.engine.begin() as conn:
            self.recorder.record(conn, plan.writes)
            self.crash("before_db_commit")
        self.crash("after_db_commit")
        return plan.result

    def _dead_letter(self, b: _Bad) -> Outgoing:
        return dead_letter_message(
            b.message, b.kind, b.reason, self.stage.name, self.dlq_topic,
            self.settings.max_message_bytes,
        )  # fmt: skip

    def _handled(self, conn: Connection, event_ids: Sequence[str]) -> set[str]:
        if not event_ids:
            return set()
        table = HandledEvent.__table__
        query = select(table.c.event_id).where(table.c.consumer == self.stage.name)
        return {r.event_id for r in select_in(conn, query, table.c.event_id, event_ids)}

    def _dead_letters_at(
        self, conn: Connection, messages: Sequence[RawMessage]
    ) -> dict[tuple[str, int, int], tuple[str, str]]:
        """(kind, reason) of the messages already dead-lettered, by their coordinates.

        One range query per partition of the batch (its offsets are contiguous), so a
        redelivered refusal is recognised without looking each message up.
        """
        spans: dict[tuple[str, int], list[int]] = {}
        for m in messages:
            span = spans.setdefault((m.topic, m.partition), [m.offset, m.offset])
            span[0], span[1] = min(span[0], m.offset), max(span[1], m.offset)
        table = DeadLetter.__table__
        found: dict[tuple[str, int, int], tuple[str, str]] = {}
        for (topic, partition), (low, high) in spans.items():
            rows = conn.execute(
                select(table.c.source_offset, table.c.kind, table.c.reason).where(
                    table.c.consumer == self.stage.name,
                    table.c.source_topic == topic,
                    table.c.source_partition == partition,
                    table.c.source_offset.between(low, high),
                )
            )
            for r in rows:
                found[(topic, partition, int(r.source_offset))] = (r.kind, r.reason)
        return found


def _handled_row(name: str, inbound: Inbound, decision: Decision, now: datetime) -> Handled:
    return Handled(
        name, inbound.event_id, inbound.event_type, decision.payment_id, inbound.topic,
        inbound.partition, inbound.offset, decision.outcome, now,
    )  # fmt: skip
