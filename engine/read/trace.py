"""A payment's life from the ledger: its hold, steps, events, state changes, postings,
notifications, dead letters; as a view per audience.

:func:`read_trace` reads every row as stored (``engine.audit.trace.scan_topics`` needs
the events' keys to find them on the broker); :meth:`PaymentTrace.for_audience` makes
the view that is shown. What each audience sees:

- an auditor: every section, every row whole.
- an operator: every section; account numbers to their last 4 digits, Kafka keys
  (the payer's account) and free text (reasons, errors) masked.
- a bank (the payer's or the payee's bank only): the payment, its hold, its steps,
  its state changes and postings, and the notifications to itself with their
  attempts; its own customers' accounts whole, the other bank's masked; never the
  ledger entries, the topics, other banks' notifications, dead letters or redrives.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, select

from engine.ids import SEPARATOR
from engine.ledger.models import (
    DeadLetter,
    DeadLetterRedrive,
    EmittedEvent,
    HandledEvent,
    LedgerEntry,
    Notification,
    NotificationAttempt,
    NotificationRedelivery,
    Payment,
    PaymentTransition,
    Posting,
)
from engine.masking import mask_account, mask_key, mask_text
from engine.read.audience import Audience
from engine.read.exceptions import PaymentNotFoundError
from engine.read.payments import visible_to
from engine.read.rows import hold_rows, payment_rows, step_rows
from engine.times import as_utc
from engine.topology import Topology

FREE_TEXT_FIELDS = ("reason_message", "reason", "last_error", "error", "remittance_info")
BANK_SECTIONS = ("hold", "steps", "transitions", "postings", "notifications", "attempts")


class _Sections:
    """What a trace and its view share: the sections by name, the payment's signer."""

    payment: Mapping[str, Any]
    hold: Mapping[str, Any] | None
    steps: Any
    events: Any
    transitions: Any
    postings: Any
    entries: Any
    notifications: Any
    attempts: Any
    dead_letters: Any
    redrives: Any
    redeliveries: Any

    @property
    def payment_id(self) -> str:
        return str(self.payment["payment_id"])

    def sections(self) -> dict[str, list[dict[str, Any]]]:
        return {"hold": [dict(self.hold)] if self.hold else [], "steps": list(self.steps),
                "events": list(self.events), "transitions": list(self.transitions),
                "postings": list(self.postings), "entries": list(self.entries),
                "notifications": list(self.notifications), "attempts": list(self.attempts),
                "dead_letters": list(self.dead_letters), "redrives": list(self.redrives),
                "redeliveries": list(self.redeliveries)}  # fmt: skip

    def signer(self) -> str:
        """Who signed the payment's PaymentInitiated (proof of origin), as a line of text."""
        bank, key_id = self.payment.get("signer_bank"), self.payment.get("signer_key_id")
        if not bank:
            return "not signed (recorded before signed events)"
        digest = self.payment.get("signed_digest") or b""
        return f"signed by bank {bank} with key {key_id} (digest {bytes(digest).hex()[:16]}…)"


@dataclass
class PaymentTrace(_Sections):
    """Every row of a payment's life as stored: for the broker scan, never shown as is."""

    payment: dict[str, Any]
    hold: dict[str, Any] | None = None  # an authorization's: amount, reserved, captured, state
    steps: list[dict[str, Any]] = field(default_factory=list)  # applied or refused, with why
    events: list[dict[str, Any]] = field(default_factory=list)
    transitions: list[dict[str, Any]] = field(default_factory=list)
    postings: list[dict[str, Any]] = field(default_factory=list)
    entries: list[dict[str, Any]] = field(default_factory=list)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    redrives: list[dict[str, Any]] = field(default_factory=list)
    redeliveries: list[dict[str, Any]] = field(default_factory=list)  # operators' requests

    def for_audience(self, audience: Audience) -> TraceView:
        """The trace as ``audience`` may see it (see the module's docstring)."""
        if not audience.may_see(self.payment["payer_bank"], self.payment["payee_bank"]):
            raise PaymentNotFoundError(f"no payment {self.payment_id} in the ledger")
        mask = _row_masker(audience, self.payment)
        shown = self.sections()
        if not audience.sees_every_bank():
            shown = _bank_sections(shown, str(audience.bank_code))
        rows = {name: tuple(mask(r) for r in shown[name]) for name in shown}
        hold = rows.pop("hold")
        return TraceView(audience, mask(self.payment), hold[0] if hold else None, **rows)


@dataclass(frozen=True)
class TraceView(_Sections):
    """A payment's life as one audience may see it."""

    audience: Audience
    payment: dict[str, Any]
    hold: dict[str, Any] | None
    steps: tuple[dict[str, Any], ...]
    events: tuple[dict[str, Any], ...]
    transitions: tuple[dict[str, Any], ...]
    postings: tuple[dict[str, Any], ...]
    entries: tuple[dict[str, Any], ...]
    notifications: tuple[dict[str, Any], ...]
    attempts: tuple[dict[str, Any], ...]
    dead_letters: tuple[dict[str, Any], ...]
    redrives: tuple[dict[str, Any], ...]
    redeliveries: tuple[dict[str, Any], ...]


def _bank_sections(
    sections: dict[str, list[dict[str, Any]]], bank: str
) -> dict[str, list[dict[str, Any]]]:
    """What a bank sees: its own notifications and their attempts; no topics, no entries."""
    own = [n for n in sections["notifications"] if n["recipient_bank"] == bank]
    ids = {n["notification_id"] for n in own}
    kept = {name: rows if name in BANK_SECTIONS else [] for name, rows in sections.items()}
    kept["notifications"] = own
    kept["attempts"] = [a for a in sections["attempts"] if a["notification_id"] in ids]
    return kept


def _row_masker(
    audience: Audience, payment: Mapping[str, Any]
) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """A function masking one row for ``audience``: accounts, keys and free text."""
    if audience.unmasked():
        return dict
    bank_of = {"payer_account": payment["payer_bank"], "payee_account": payment["payee_bank"]}

    def mask(row: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(row)
        for name, value in row.items():
            if value is None:
                continue
            if name in bank_of:
                out[name] = audience.account(str(value), bank_of[name])
            elif name == "account_number":  # a hold's (it names its bank) or an entry's
                out[name] = audience.account(str(value), str(row.get("bank_code") or ""))
            elif name == "key":
                out[name] = mask_key(value) if isinstance(value, bytes) else mask_account(value)
            elif name in FREE_TEXT_FIELDS and isinstance(value, str):
                out[name] = mask_text(value)
        return out

    return mask


def find_payment_ids(
    conn: Connection,
    audience: Audience,
    payment_id: str | None = None,
    bank_reference: str | None = None,
) -> list[str]:
    """The payment with that id, or every payment a bank sent with that reference (``BANK:REF``),
    among those ``audience`` may see.

    A payment id is the switch's, ``BANK:ID`` (engine.ids); given a bank's own id alone
    (no ``:``) and no payment from before namespaces bears it, every bank's payment of
    that own id is found.
    """
    p = Payment.__table__
    visible = visible_to(audience)
    if payment_id is not None:
        found = list(
            conn.execute(
                select(p.c.payment_id).where(p.c.payment_id == payment_id, *visible)
            ).scalars()
        )
        if not found and SEPARATOR not in payment_id:
            in_namespaces = p.c.payment_id.endswith(SEPARATOR + payment_id, autoescape=True)
            found = list(
                conn.execute(
                    select(p.c.payment_id).where(in_namespaces, *visible).order_by(p.c.payment_id)
                ).scalars()
            )
        if not found:
            raise PaymentNotFoundError(f"no payment {payment_id} in the ledger")
        return found
    if bank_reference is None or ":" not in bank_reference:
        raise PaymentNotFoundError("give a payment id or a bank reference as BANK:REFERENCE")
    bank, _, reference = bank_reference.partition(":")
    found = list(conn.execute(
        select(p.c.payment_id)
        .where(p.c.payer_bank == bank, p.c.bank_reference == reference, *visible)
        .order_by(p.c.occurred_at, p.c.payment_id)
    ).scalars())  # fmt: skip
    if not found:
        raise PaymentNotFoundError(f"no payment with reference {reference!r} from bank {bank}")
    return found


def _rows(conn: Connection, query: Any) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in conn.execute(query)]


def trace_payment(
    conn: Connection, audience: Audience, payment_id: str, topology: Topology
) -> TraceView:
    """A payment's life as ``audience`` may see it; another bank's payment is not found."""
    return read_trace(conn, payment_id, topology).for_audience(audience)


def read_trace(conn: Connection, payment_id: str, topology: Topology) -> PaymentTrace:
    """Every row of a payment's life as stored (see :meth:`PaymentTrace.for_audience`).

    ``topology`` tells which stage took the payment from its bank and which decided it:
    events and steps are told apart by the stage that recorded them.
    """
    entry, deciding = topology.entry.name, topology.deciding.name
    payment = payment_rows(conn, [payment_id]).get(payment_id)
    if payment is None:
        raise PaymentNotFoundError(f"no payment {payment_id} in the ledger")
    trace = PaymentTrace(payment)
    trace.hold = hold_rows(conn, [payment_id]).get(payment_id)
    trace.steps = _steps(conn, payment_id, entry, deciding)
    trace.events = _events(conn, payment_id, entry)
    t = PaymentTransition.__table__
    trace.transitions = _rows(conn, select(t).where(t.c.payment_id == payment_id).order_by(t.c.id))
    po, e = Posting.__table__, LedgerEntry.__table__
    trace.postings = _rows(conn, select(po).where(po.c.payment_id == payment_id))
    posting_ids = [x["posting_id"] for x in trace.postings]
    if posting_ids:
        # Each entry with its place in its hash chain (chain_id, chain_seq, the hashes).
        trace.entries = _rows(
            conn,
            select(e).where(e.c.posting_id.in_(posting_ids)).order_by(e.c.chain_id, e.c.chain_seq),
        )
    n, a = Notification.__table__, NotificationAttempt.__table__
    trace.notifications = _rows(
        conn,
        select(
            n.c.notification_id,
            n.c.outcome,
            n.c.recipient_bank,
            n.c.sender,
            n.c.status,
            n.c.attempts,
            n.c.round,
            n.c.next_attempt_at,
            n.c.last_error,
            n.c.created_at,
            n.c.finished_at,
        )
        .where(n.c.payment_id == payment_id)
        .order_by(n.c.created_at, n.c.recipient_bank),
    )
    ids = [x["notification_id"] for x in trace.notifications]
    if ids:
        trace.attempts = _rows(
            conn,
            select(a).where(a.c.notification_id.in_(ids)).order_by(a.c.notification_id, a.c.number),
        )
        trace.redeliveries = _redeliveries(conn, ids)
    trace.redrives = _redrives(conn, payment_id)
    d = DeadLetter.__table__
    redriven = [r["dead_letter_id"] for r in trace.redrives]
    trace.dead_letters = _rows(
        conn,
        select(d).where((d.c.payment_id == payment_id) | d.c.id.in_(redriven)).order_by(d.c.id),
    )
    return trace


def _steps(conn: Connection, payment_id: str, entry: str, deciding: str) -> list[dict[str, Any]]:
    """Every step asked of the payment, applied or refused, in the order it was answered.

    A step's answer is the last event a stage emitted for it (``emitted_events.id`` is
    one sequence for every stage): settlement's for a step it decided, the validator's
    for one it refused. Its request's event id is the step id; the validator forwards it
    under a derived id, which settlement's answer names as its source.
    """
    em = EmittedEvent.__table__
    steps = step_rows(conn, [payment_id])
    emitted = conn.execute(
        select(em.c.id, em.c.consumer, em.c.source_event_id, em.c.event_id)
        .where(em.c.payment_id == payment_id, em.c.consumer.in_((entry, deciding)))
        .order_by(em.c.id)
    ).all()
    request_of = {r.event_id: r.source_event_id for r in emitted if r.consumer == entry}
    answered: dict[str, int] = {}
    for r in emitted:  # in id order: the last answer stays
        answered[request_of.get(r.source_event_id, r.source_event_id)] = r.id
    steps.sort(key=lambda r: (answered.get(r["step_id"], 0), as_utc(r["occurred_at"])))
    return steps


def _redrives(conn: Connection, payment_id: str) -> list[dict[str, Any]]:
    """Dead letters of this payment sent again: who asked, when, why, where the copy went.

    A dead letter is recorded before its body is read, so it rarely names its payment;
    its redrive does, once the body decoded. The bytes and key stay out (the key is the
    payer's account).
    """
    r = DeadLetterRedrive.__table__
    return _rows(
        conn,
        select(
            r.c.dead_letter_id, r.c.requested_by, r.c.requested_at, r.c.reason,
            r.c.body_source, r.c.status, r.c.target_topic, r.c.published_partition,
            r.c.published_offset, r.c.published_at, r.c.event_id,
        )
        .where(r.c.payment_id == payment_id)
        .order_by(r.c.id),
    )  # fmt: skip


def _events(conn: Connection, payment_id: str, entry: str) -> list[dict[str, Any]]:
    """Every event of the payment: those from outside the stages (banks' payments and steps,
    the switch's expiries) with their coordinates, then those the stages emitted.
    """
    h, em = HandledEvent.__table__, EmittedEvent.__table__
    handled = _rows(conn, select(h).where(h.c.payment_id == payment_id).order_by(h.c.handled_at))
    emitted = _rows(
        conn,
        select(em.c.consumer, em.c.source_event_id, em.c.event_id, em.c.topic, em.c.key)
        .where(em.c.payment_id == payment_id)
        .order_by(em.c.id),
    )
    consumed_by: dict[str, list[dict[str, Any]]] = {}
    for row in handled:
        consumed_by.setdefault(row["event_id"], []).append(row)
    handled_at = {row["event_id"]: row["handled_at"] for row in handled}
    events: list[dict[str, Any]] = []
    made_by_stages = {row["event_id"] for row in emitted}
    for row in handled:  # what no stage produced: the banks' events and the switch's expiries
        if row["consumer"] == entry:
            producer = "bank"
        elif row["event_id"] not in made_by_stages:
            producer = "switch (expiry scheduler)"
        else:
            continue
        events.append(_event_row(row["event_id"], row["event_type"], row["topic"], producer, row))
    for row in emitted:
        producer = row["consumer"]
        consumers = consumed_by.get(row["event_id"], [])
        first = consumers[0] if consumers else None
        event = _event_row(
            row["event_id"], first["event_type"] if first else "", row["topic"], producer, first
        )
        event["key"] = row["key"]
        event["source_handled_at"] = handled_at.get(row["source_event_id"])
        events.append(event)
    return events


def _event_row(
    event_id: str, event_type: str, topic: str, producer: str, consumed: dict[str, Any] | None
) -> dict[str, Any]:
    return {
        "event_id": event_id, "event_type": event_type, "topic": topic, "produced_by": producer,
        "consumed_by": consumed["consumer"] if consumed else None,
        "partition": consumed["partition"] if consumed else None,
        "offset": consumed["offset"] if consumed else None,
        "outcome": consumed["outcome"] if consumed else None,
        "handled_at": consumed["handled_at"] if consumed else None,
        "record_time": None, "on_topic": None,
    }  # fmt: skip


def _redeliveries(conn: Connection, notification_ids: list[str]) -> list[dict[str, Any]]:
    """The audit trail of redelivery requests for these notifications, oldest first."""
    r = NotificationRedelivery.__table__
    return _rows(conn, select(r).where(r.c.notification_id.in_(notification_ids)).order_by(r.c.id))
