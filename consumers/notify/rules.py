"""The delivery loop's decisions, pure: what a round of attempts means for the ledger.

Given the attempts a channel reported, ``now`` and a seeded generator, :func:`decide`
says which notifications are finished (DELIVERED, or FAILED at the horizon), which are
due again and when, and which attempts to store; :mod:`consumers.notify.book` records
that as guarded rows. :func:`deal_slots` says how many notifications of each bank to
claim. Neither reads a clock, a database or a generator of its own.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from consumers.notify.message import DeliveryResult, Notification
from consumers.notify.schedule import RetrySchedule
from engine.domain.notifications import NotificationStatus
from engine.events import PAYMENT_NOTIFIED, derived_event_id
from engine.ledger.notification_writes import AttemptMade, RetryLater

ERROR_MAX_CHARS = 500


@dataclass(frozen=True)
class Claimed:
    """A notification leased for one attempt."""

    notification: Notification
    token: str
    attempts_before: int
    deadline_at: datetime
    round: int
    source_event_id: str


@dataclass(frozen=True)
class Finished:
    claimed: Claimed
    result: DeliveryResult


@dataclass(frozen=True)
class Ending:
    """A notification this round finishes: its final state and attempt count."""

    finished: Finished
    state: NotificationStatus
    attempts: int
    last_error: str | None


@dataclass(frozen=True)
class Decided:
    """What a round of finished attempts comes to: rows to store, notifications to end."""

    attempts: tuple[AttemptMade, ...]
    ending: tuple[Ending, ...]
    retries: tuple[RetryLater, ...]

    def ended(self, state: NotificationStatus) -> list[Ending]:
        return [e for e in self.ending if e.state is state]


def _attempt_rows(f: Finished) -> list[AttemptMade]:
    c = f.claimed
    return [
        AttemptMade(
            c.notification.notification_id,
            c.attempts_before + a.number,
            a.started_at,
            int(a.duration_s * 1000),
            a.status_code,
            (a.error or None) and a.error[:ERROR_MAX_CHARS],
        )
        for a in f.result.attempts
    ]


def decide(
    finished: Iterable[Finished], now: datetime, schedule: RetrySchedule, rng: random.Random
) -> Decided:
    """Each attempt's consequence, in order; ``rng`` is drawn once per retry, in order."""
    attempts: list[AttemptMade] = []
    ending: list[Ending] = []
    retries: list[RetryLater] = []
    for f in finished:
        c, result = f.claimed, f.result
        attempts += _attempt_rows(f)
        total = c.attempts_before + max(len(result.attempts), 1)
        error = (result.last_error or "")[:ERROR_MAX_CHARS] or None
        if result.delivered:
            ending.append(Ending(f, NotificationStatus.DELIVERED, total, error))
            continue
        at = schedule.next_attempt_at(now, total, c.deadline_at, rng)
        if at is None:
            ending.append(Ending(f, NotificationStatus.FAILED, total, error))
        else:
            nid = c.notification.notification_id
            retries.append(RetryLater(nid, c.token, c.attempts_before, at, total, error))
    return Decided(tuple(attempts), tuple(ending), tuple(retries))


def notified_event_id(source_event_id: str, recipient_bank: str, round_: int) -> str:
    """Round 0 keeps the id the stage always used; each redelivery round gets its own."""
    extra = recipient_bank if round_ == 0 else f"{recipient_bank}/round-{round_}"
    return derived_event_id(source_event_id, PAYMENT_NOTIFIED.name, extra)


def notified_event(claimed: Claimed, status: str, attempts: int, sender: str) -> dict[str, Any]:
    """The ``PaymentNotified`` record that announces a finished notification."""
    n, data = claimed.notification, claimed.notification.payload
    return {
        "event_id": notified_event_id(claimed.source_event_id, n.recipient_bank, claimed.round),
        "payment_id": n.payment_id,
        "bank_reference": data.get("bank_reference", ""),
        "occurred_at": datetime.fromisoformat(data["occurred_at"]),
        # A refused step may name no payment the switch knows: no payee, maybe no payer bank.
        "payer_bank": data.get("payer_bank", ""), "payer_account": data["payer_account"],
        "payee_bank": data.get("payee_bank", ""), "payee_account": data.get("payee_account", ""),
        "outcome": n.outcome, "notification_id": n.notification_id,
        "recipient_bank": n.recipient_bank, "sender": sender,
        "delivery_status": status, "attempts": attempts,
        "causation_event_id": claimed.source_event_id,
    }  # fmt: skip


@dataclass(frozen=True)
class SlotLimits:
    """Bounds on attempts in flight: threads in all, per bank, and claims per round."""

    threads: int
    per_bank: int
    claim_max: int


def deal_slots(
    due: Mapping[str, int], in_flight: Mapping[str, int], limits: SlotLimits, rotation: int
) -> dict[str, int]:
    """Free threads dealt one at a time to the banks in turn, each up to its own cap.

    The first bank served is ``rotation`` (modulo the banks wanting work), so when the
    caller turns it every round and threads are short, no bank is always served last.
    """
    room = min(limits.threads - sum(in_flight.values()), limits.claim_max)
    want = {b: min(n, limits.per_bank - in_flight.get(b, 0)) for b, n in due.items()}
    order = sorted(b for b, n in want.items() if n > 0)
    if not order:
        return {}
    start = rotation % len(order)
    order = order[start:] + order[:start]
    slots: Counter[str] = Counter()
    while room > 0 and order:  # each pass deals at least one thread, or ends
        for bank in order:
            if room == 0:
                break
            slots[bank] += 1
            room -= 1
        order = [b for b in order if slots[b] < want[b]]
    return dict(slots)
