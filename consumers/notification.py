"""Notification: tells the banks each payment's outcome, once per (payment, outcome, bank).

In the batch's transaction, one ``notifications`` row per recipient, PENDING and due
now (a unique key forbids a second one for the same outcome and bank). That is all the
Kafka batch does: delivery runs apart, on the persisted schedule of
:mod:`consumers.notify`, so no bank's endpoint ever holds the batch, and a bank that
is down is retried for hours without holding the others back.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from engine.config import Settings
from engine.domain import REFUSED, NotificationStatus, Outcome, Party, PaymentState, spec_of
from engine.events import (
    OUTCOME_EVENTS,
    PAYMENT_FAILED,
    PAYMENT_REJECTED,
    PAYMENT_SETTLED,
    PAYMENT_STEP_COMPLETED,
    PAYMENT_STEP_REFUSED,
    SWITCH,
    uuid5_text,
)
from engine.ledger.recorder import DueNotification
from engine.pipeline.contract import Decision, Refusal, StageDefaults
from engine.pipeline.messages import Inbound

NAME = "notification"
OUTCOME_OF = {
    PAYMENT_SETTLED.name: PaymentState.SETTLED, PAYMENT_REJECTED.name: PaymentState.REJECTED,
    PAYMENT_FAILED.name: PaymentState.FAILED,
}  # fmt: skip
STEP_COMPLETED, STEP_REFUSED = PAYMENT_STEP_COMPLETED.name, PAYMENT_STEP_REFUSED.name
NOTIFICATION_NAMESPACE = uuid.UUID("5a4b0c1e-7d1f-4c2e-9a55-5a4b4b000002")
PAYLOAD_FIELDS = (
    "payment_id",
    "bank_reference",
    "payer_bank",
    "payer_account",
    "payee_bank",
    "payee_account",
    "amount_minor",
    "currency",
    "channel",
    "fee_minor",
    "reason_code",
    "reason_message",
    "settlement_window",
    "remittance_info",
    # the steps of a payment's lifecycle
    "step",
    "step_id",
    "sender_bank",
    "posting_id",
    "held_minor",
    "captured_minor",
    "refunded_minor",
    "payment_state",
)


def notification_id(payment_id: str, outcome: str, bank: str) -> str:
    """Stable across retries and restarts: receivers deduplicate on it."""
    return uuid5_text(NOTIFICATION_NAMESPACE, f"{payment_id}/{outcome}/{bank}")


def recipients(event_type: str, record: dict[str, Any]) -> list[str]:
    """Who is told.

    A payment's outcome: the payer's bank always; the payee's bank too when money reached
    it. A step that took effect: those its spec names (both banks). A refused step: the
    bank that asked for it (nobody for the switch's own expiry, which the step that beat
    it was told of).
    """
    if event_type == STEP_REFUSED:
        sender = record["sender_bank"]
        return [] if sender == SWITCH else [sender]
    banks = [record["payer_bank"]]
    both = event_type == PAYMENT_SETTLED.name or (
        event_type == STEP_COMPLETED and Party.PAYEE_BANK in spec_of(record["step"]).who_is_told
    )
    if both and record["payee_bank"] != record["payer_bank"]:
        banks.append(record["payee_bank"])
    return banks


def outcome_of(event_type: str, record: dict[str, Any]) -> tuple[str, str] | None:
    """(what is told, of what): the outcome and the id its notifications derive from.

    A payment's outcome is told once per payment; each of its steps once per step.
    """
    if event_type == STEP_COMPLETED:
        return str(record["step"]), str(record["step_id"])
    if event_type == STEP_REFUSED:
        return REFUSED, str(record["causation_event_id"])
    outcome = OUTCOME_OF.get(event_type)
    return None if outcome is None else (outcome, str(record["payment_id"]))


# The ISO 20022 ids of a payment each bank is told (``iso`` in the payload). The payer's
# bank gets back every id it sent; the payee's bank only those that travel end to end
# (EndToEndId, TxId, UETR): the payer bank's MsgId and InstrId are its own business.
ISO_IDS_FOR_PAYER = ("msg_id", "msg_name", "instr_id", "end_to_end_id", "tx_id", "uetr")
ISO_IDS_FOR_PAYEE = ("end_to_end_id", "tx_id", "uetr")


def payload_of(record: dict[str, Any], recipient: str | None = None) -> dict[str, Any]:
    """What a notification to ``recipient`` carries (None: as told to the payer's bank)."""
    payload = {k: record[k] for k in PAYLOAD_FIELDS if record.get(k) is not None}
    payload["occurred_at"] = record["occurred_at"].isoformat()
    if record.get("hold_expires_at") is not None:
        payload["hold_expires_at"] = record["hold_expires_at"].isoformat()
    iso = record.get("iso")
    if iso:
        payer = recipient is None or recipient == record.get("payer_bank")
        told = {k: iso[k] for k in (ISO_IDS_FOR_PAYER if payer else ISO_IDS_FOR_PAYEE)
                if iso.get(k) is not None}  # fmt: skip
        if told:
            payload["iso"] = told
    return payload


@dataclass(frozen=True, slots=True)
class NotificationContext:
    """When the batch's notifications fall due, and when they are given up."""

    now: datetime
    deadline: datetime

    def absorb(self, decision: Decision) -> None:
        return None  # notifications of one batch never depend on each other


class NotificationStage(StageDefaults):
    """Stage: payments.settled | rejected | failed -> notifications scheduled for delivery."""

    name = NAME

    def __init__(self, settings: Settings, sender_name: str = "log"):
        self.settings = settings
        self.sender_name = sender_name

    def input_topics(self) -> list[str]:
        return [e.topic(self.settings) for e in OUTCOME_EVENTS]

    def load(self, conn: Connection, batch: Sequence[Inbound]) -> NotificationContext:
        now = datetime.now(UTC)  # schedules delivery; decides nothing in the ledger
        return NotificationContext(now, now + timedelta(seconds=self.settings.notify_horizon_s))

    def decide(self, inbound: Inbound, ctx: NotificationContext) -> Decision | Refusal:
        told = outcome_of(inbound.event_type, inbound.record)
        if told is None:
            return Refusal("unexpected_event", f"{inbound.event_type} on {inbound.topic}")
        outcome, subject = told
        record = inbound.record
        rows = tuple(
            DueNotification(
                notification_id(subject, outcome, bank),
                record["payment_id"],
                outcome,
                bank,
                self.sender_name,
                NotificationStatus.PENDING,
                0,
                json.dumps(payload_of(record, bank), sort_keys=True),
                inbound.event_id,
                ctx.now,
                ctx.now,
                ctx.deadline,
                0,
            )  # fmt: skip
            for bank in recipients(inbound.event_type, record)
        )
        return Decision(Outcome.NOTIFIED, record["payment_id"], writes=rows)
