"""Builders of test payments against ``tests/fixtures/reference.json``."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from engine.ids import switch_id_of
from engine.ledger.recorder import Recorder
from engine.pipeline.contract import Decision, Stage
from engine.pipeline.messages import Inbound, RawMessage
from engine.serialization import EVENT_TYPES
from producers.signing import simulated_signers

REFERENCE_FILE = Path(__file__).parent / "fixtures" / "reference.json"
SCHEMAS = Path(__file__).parent.parent / "schemas"
# The test banks' keys; their public halves are in the reference fixture's ``keys``.
SIGNERS = simulated_signers(["007", "011", "310"], "tests")

AMINA = ("007", "007780000000000000000111")  # 1,000.00 MAD
YOUSSEF = ("007", "007780000000000000000222")  # 500.00 MAD + 100.00 overdraft
KARIM = ("011", "011810000000000000000333")  # 200.00 MAD
CLOSED = ("011", "011810000000000000000444")
BLOCKED = ("011", "011810000000000000000555")
RAM = ("007", "007780000000000000000999")  # merchant: Royal Air Maroc
SALMA = ("007", "007780000000000000000777")  # 5,000.00 MAD, pays by card
VIGNETTE_DGI = ("310", "310810000000000000000001")


def payment(
    payer: tuple[str, str] = AMINA,
    payee: tuple[str, str] = KARIM,
    amount_minor: int = 10_000,
    channel: str = "WEB",
    payment_type: str = "TRANSFER",
    reference: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A PaymentInitiated record; every id fresh unless given."""
    record = {
        "event_id": str(uuid.uuid4()),
        "payment_id": str(uuid.uuid4()),
        "bank_reference": reference or f"REF-{uuid.uuid4().hex[:16]}",
        "occurred_at": datetime.now(UTC).replace(microsecond=0),
        "payer_bank": payer[0],
        "payer_account": payer[1],
        "payee_bank": payee[0],
        "payee_account": payee[1],
        "amount_minor": amount_minor,
        "currency": "MAD",
        "channel": channel,
        "payment_type": payment_type,
        "merchant_category_code": None,
        "egov_service": None,
        "intent": "SALE",
        "remittance_info": None,
    }
    record.update(extra)
    return record


def switch_id(record: dict[str, Any], field: str = "payment_id") -> str:
    """The switch's id of a bank's id in ``record``, as the ledger keeps it (engine.ids): in
    the namespace of the bank that sent it (a step's sender, a payment's payer); an id that
    names a payment by the switch's id is that id."""
    return switch_id_of(record, field)


def vignette(amount_minor: int = 70_000, payer: tuple[str, str] = AMINA) -> dict[str, Any]:
    return payment(
        payer,
        VIGNETTE_DGI,
        amount_minor,
        channel="EGOV",
        payment_type="EGOV",
        egov_service="VIGNETTE",
    )


def signed(
    topic: str, key: bytes | None, value: bytes, bank: str = "007"
) -> tuple[tuple[str, bytes], ...]:
    """The signature headers bank ``bank`` puts on a message it publishes."""
    return SIGNERS.headers(bank, topic, key, value)


def inbound(topic: str, event_type: str, record: dict[str, Any], offset: int = 0) -> Inbound:
    """A decoded event as a stage receives it, from partition 0 at ``offset``."""
    return Inbound(RawMessage(topic, 0, offset, b"k", None, 0), event_type, record)


def decide_and_record(conn: Connection, stage: Stage[Any], batch: list[Inbound]) -> list[Any]:
    """What the processor does with fresh events, without Kafka: decide each, record them."""
    context = stage.load(conn, batch)
    decisions = []
    for event in batch:
        decision = stage.decide(event, context)
        if isinstance(decision, Decision):
            context.absorb(decision)
        decisions.append(decision)
    Recorder().record(conn, [w for d in decisions if isinstance(d, Decision) for w in d.writes])
    return decisions


def authorization(
    payer: tuple[str, str] = AMINA,
    payee: tuple[str, str] = RAM,
    amount_minor: int = 10_000,
    channel: str = "POS",
    **extra: Any,
) -> dict[str, Any]:
    """A PaymentInitiated record that asks for a hold (a card purchase, by default at a POS)."""
    return payment(payer, payee, amount_minor, channel, "PURCHASE", intent="AUTHORIZATION", **extra)


def step(
    of: dict[str, Any],
    kind: str,
    sender: str,
    amount_minor: int | None = None,
    *,
    final: bool = False,
    reason_code: str | None = None,
    reference: str | None = None,
    occurred_at: datetime | None = None,
) -> dict[str, Any]:
    """A PaymentStepRequested record: ``sender`` asks for ``kind`` of payment ``of``.

    The payer's bank names the payment by its own id; any other bank by the switch's id,
    the one it was told.
    """
    return {
        "event_id": str(uuid.uuid4()),
        "payment_id": of["payment_id"] if sender == of["payer_bank"] else switch_id(of),
        "bank_reference": reference or f"{kind[:3]}-{uuid.uuid4().hex[:16]}",
        "occurred_at": occurred_at or of["occurred_at"],
        "sender_bank": sender,
        "payer_account": of["payer_account"],
        "step": kind,
        "amount_minor": amount_minor,
        "currency": "MAD" if amount_minor is not None else None,
        "final": final,
        "reason_code": reason_code,
    }


def validated_step(record: dict[str, Any]) -> dict[str, Any]:
    """The PaymentStepValidated the validator makes of a step it accepts."""
    return dict(record, causation_event_id=record["event_id"])


def as_read(event_type: str, record: dict[str, Any]) -> dict[str, Any]:
    """``record`` as a reader of the release schema sees it: each field it leaves out at its
    default (an optional field a newer release added, say)."""
    schema = json.loads((SCHEMAS / EVENT_TYPES[event_type]).read_text(encoding="utf-8"))
    return {**{f["name"]: f["default"] for f in schema["fields"] if "default" in f}, **record}
