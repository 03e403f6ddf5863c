"""Notification: tells the banks each payment's outcome, once per (payment, outcome, bank).

Two steps, so a slow webhook never holds a ledger transaction open:

1. In the batch's transaction, one ``notifications`` row per recipient, PENDING
   (a unique key forbids a second one for the same outcome and bank).
2. After the commit, every PENDING notification of the batch's events is
   delivered (in parallel, each with bounded retries), the attempts and the
   final status are recorded, and ``PaymentNotified`` is emitted.

A crash between the two leaves the rows PENDING; the redelivered event finds
them and step 2 runs again, with the same notification id, so the receiver can
deduplicate. The delivery results and the ``PaymentNotified`` events are stored
in one transaction, so no finished notification is ever left unannounced.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, insert, select, update

from consumers.senders import DeliveryResult, Notification, Sender
from engine import metrics
from engine.config import Settings
from engine.ledger.database import read_only
from engine.ledger.models import Bank, NotificationAttempt, table_of
from engine.ledger.models import Notification as NotificationRow
from engine.runtime import Completion, DeadLetterReason, Handled, Inbound, derived_event_id

NAME = "notification"
OUTCOME_OF = {"PaymentSettled": "SETTLED", "PaymentRejected": "REJECTED", "PaymentFailed": "FAILED"}
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
)
IN_CHUNK = 500


def notification_id(payment_id: str, outcome: str, bank: str) -> str:
    """Stable across retries and restarts: receivers deduplicate on it."""
    return str(uuid.uuid5(NOTIFICATION_NAMESPACE, f"{payment_id}/{outcome}/{bank}"))


def recipients(event_type: str, record: dict[str, Any]) -> list[str]:
    """The payer's bank always; the payee's bank too when money reached it."""
    banks = [record["payer_bank"]]
    if event_type == "PaymentSettled" and record["payee_bank"] != record["payer_bank"]:
        banks.append(record["payee_bank"])
    return banks


def payload_of(record: dict[str, Any]) -> dict[str, Any]:
    payload = {k: record[k] for k in PAYLOAD_FIELDS if record.get(k) is not None}
    payload["occurred_at"] = record["occurred_at"].isoformat()
    return payload


class NotificationStage:
    """Stage: payments.settled | rejected | failed -> banks told -> payments.notified."""

    name = NAME

    def __init__(self, settings: Settings, sender: Sender):
        self.settings = settings
        self.sender = sender
        self._pool = ThreadPoolExecutor(settings.webhook_concurrency, thread_name_prefix="notify")

    def input_topics(self) -> list[str]:
        return [self.settings.topic(t) for t in ("settled", "rejected", "failed")]

    def process(self, conn: Connection, batch: Sequence[Inbound]) -> list[Handled]:
        now = datetime.now(UTC)
        rows, decisions = [], []
        for inbound in batch:
            outcome = OUTCOME_OF.get(inbound.event_type)
            if outcome is None:
                raise DeadLetterReason(
                    "unexpected_event", f"{inbound.event_type} on {inbound.topic}"
                )
            record = inbound.record
            payload = json.dumps(payload_of(record), sort_keys=True)
            for bank in recipients(inbound.event_type, record):
                rows.append({
                    "notification_id": notification_id(record["payment_id"], outcome, bank),
                    "payment_id": record["payment_id"], "outcome": outcome,
                    "recipient_bank": bank, "sender": self.sender.name, "status": "PENDING",
                    "attempts": 0, "last_error": None, "payload": payload,
                    "source_event_id": inbound.event_id, "created_at": now, "finished_at": None,
                })  # fmt: skip
            decisions.append(Handled("notified", record["payment_id"]))
        conn.execute(insert(NotificationRow), rows)
        return decisions

    def complete(self, engine: Engine, event_ids: Sequence[str]) -> Completion:
        """Deliver what is pending; its record and PaymentNotified commit in one transaction."""
        pending = self._pending(engine, event_ids)
        if not pending:
            return Completion()
        notifications = [n for n, _ in pending]
        if self.sender.concurrent:
            results = list(self._pool.map(self._deliver, notifications))
        else:
            results = [self._deliver(n) for n in notifications]  # local and fast: no threads
        follow_ups = [
            (
                row["source_event_id"],
                "PaymentNotified",
                _notified_event(row, n, result.delivered, len(result.attempts), self.sender.name),
            )
            for (n, row), result in zip(pending, results, strict=True)
        ]
        return Completion(follow_ups, lambda conn: self._record(conn, pending, results))

    def _deliver(self, notification: Notification) -> DeliveryResult:
        result = self.sender.deliver(notification)
        status = "delivered" if result.delivered else "failed"
        metrics.NOTIFICATION_DELIVERIES.labels(self.sender.name, status).inc()
        return result

    def _pending(self, engine: Engine, event_ids: Sequence[str]) -> list[tuple[Notification, dict]]:
        """The events' notifications still PENDING (new, or left by a crash before recording)."""
        table, banks = NotificationRow.__table__, Bank.__table__
        pending: list[tuple[Notification, dict]] = []
        with read_only(engine).connect() as conn:
            for start in range(0, len(event_ids), IN_CHUNK):
                chunk = list(event_ids[start : start + IN_CHUNK])
                rows = conn.execute(
                    select(table, banks.c.webhook_url)
                    .join(banks, banks.c.code == table.c.recipient_bank, isouter=True)
                    .where(table.c.source_event_id.in_(chunk), table.c.status == "PENDING")
                    .order_by(table.c.notification_id)
                ).mappings()
                for row in rows:
                    n = Notification(
                        row["notification_id"],
                        row["payment_id"],
                        row["outcome"],
                        row["recipient_bank"],
                        row["webhook_url"],
                        json.loads(row["payload"]),
                    )
                    pending.append((n, dict(row)))
        return pending

    def _record(self, conn: Connection, pending: list, results: list[DeliveryResult]) -> None:
        now = datetime.now(UTC)
        attempts, updates = [], []
        for (n, _row), result in zip(pending, results, strict=True):
            for a in result.attempts:
                attempts.append(
                    {
                        "notification_id": n.notification_id,
                        "number": a.number,
                        "started_at": a.started_at,
                        "duration_ms": int(a.duration_s * 1000),
                        "status_code": a.status_code,
                        "error": (a.error or None) and a.error[:500],
                    }
                )
            updates.append(
                {
                    "nid": n.notification_id,
                    "status": "DELIVERED" if result.delivered else "FAILED",
                    "attempts": len(result.attempts),
                    "last_error": (result.last_error or None) and result.last_error[:500],
                    "finished_at": now,
                }
            )
        table = table_of(NotificationRow)
        if attempts:
            conn.execute(insert(NotificationAttempt), attempts)
        conn.execute(
            update(table)
            .where(table.c.notification_id == bindparam("nid"))
            .values(
                status=bindparam("status"),
                attempts=bindparam("attempts"),
                last_error=bindparam("last_error"),
                finished_at=bindparam("finished_at"),
            ),
            updates,
        )

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.sender.close()


def _notified_event_id(row: dict) -> str:
    return derived_event_id(row["source_event_id"], "PaymentNotified", row["recipient_bank"])


def _notified_event(
    row: dict, n: Notification, delivered: bool, attempts: int, sender: str
) -> dict[str, Any]:
    data = n.payload
    return {
        "event_id": _notified_event_id(row),
        "payment_id": n.payment_id,
        "bank_reference": data.get("bank_reference", ""),
        "occurred_at": datetime.fromisoformat(data["occurred_at"]),
        "payer_bank": data["payer_bank"], "payer_account": data["payer_account"],
        "payee_bank": data["payee_bank"], "payee_account": data["payee_account"],
        "outcome": n.outcome, "notification_id": n.notification_id,
        "recipient_bank": n.recipient_bank, "sender": sender,
        "delivery_status": "DELIVERED" if delivered else "FAILED",
        "attempts": attempts, "causation_event_id": row["source_event_id"],
    }  # fmt: skip
