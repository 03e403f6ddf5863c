"""What the workload's generators share: the messages and what each must end as, the
simulated banks' keys, the reference data's accounts, hold lives and fees, and a seeded
minter of signed payments.

Everything a generator draws comes from one ``random.Random(seed)``, the minter's: the
same seed and start give the same bytes in the same order.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from engine.events import PAYMENT_INITIATED
from engine.ids import switch_id_of
from engine.ledger.reference import FeeSchedule
from engine.serialization import AvroCodec
from producers.signing import Headers, Signers, bank_codes, simulated_signers

EVENT_TYPE = PAYMENT_INITIATED.name
CURRENCY = "MAD"
DEFAULT_TOPIC = "payments.initiated"  # Settings().topic("initiated"); signatures cover it


def workload_signers(reference: Mapping[str, Any], namespace: str) -> Signers:
    """One reproducible key per bank of ``reference``, the same for a ``namespace``.

    The keys derive from the namespace (a seed): whoever knows it can sign as any bank,
    so simulated traffic belongs on a test ledger, never on one real banks use.
    """
    return simulated_signers(bank_codes(reference), namespace)


@dataclass(frozen=True, slots=True)
class Message:
    """One message for ``payments.initiated``; ``value`` None is an empty (tombstone) message."""

    key: bytes | None
    value: bytes | None
    label: str
    payment_id: str | None = None  # the payment this message creates, if any (switch's id)
    headers: Headers = ()  # the signature of the bank that sends it


@dataclass(frozen=True, slots=True)
class ExpectedStep:
    """A step the ledger must record exactly once (``payment_steps``), as ``outcome``."""

    step_id: str  # the bank's request's event id (the expiry's own for the switch's)
    payment_id: str
    label: str
    kind: str
    sender_bank: str
    outcome: str  # APPLIED | REFUSED
    reason: str | None = None  # the reason a refusal must give
    amount_minor: int | None = None  # applied: captured, released or paid back


@dataclass(frozen=True)
class Accounts:
    """The reference data's accounts, sorted into what a generator needs."""

    customers: list[tuple[str, str]]  # (bank, number), active, MAD
    merchants: list[tuple[str, str, str]]  # (bank, number, mcc)
    government: list[tuple[str, str, str]]  # (bank, number, service)
    closed: list[tuple[str, str]]
    blocked: list[tuple[str, str]]
    banks: list[str]

    @classmethod
    def of(cls, reference: Mapping[str, Any]) -> Accounts:
        def pick(kind: str, status: str = "ACTIVE") -> list[dict[str, Any]]:
            return [
                a
                for a in reference.get("accounts", [])
                if a["kind"] == kind
                and a.get("status", "ACTIVE") == status
                and a["currency"] == CURRENCY
            ]

        return cls(
            customers=[(a["bank"], a["number"]) for a in pick("CUSTOMER")],
            merchants=[
                (a["bank"], a["number"], a.get("merchant_category_code") or "5999")
                for a in pick("MERCHANT")
            ],
            government=[
                (a["bank"], a["number"], a.get("egov_service") or "IMPOTS")
                for a in pick("GOVERNMENT")
            ],
            closed=[(a["bank"], a["number"]) for a in pick("CUSTOMER", "CLOSED")],
            blocked=[(a["bank"], a["number"]) for a in pick("CUSTOMER", "BLOCKED")],
            banks=sorted(b["code"] for b in reference.get("banks", [])),
        )


def fee_schedule_of(reference: Mapping[str, Any]) -> FeeSchedule:
    return FeeSchedule(
        {
            (f["channel"], f["payment_type"], f["currency"]): (
                f.get("fixed_minor", 0), f.get("rate_bps", 0), f.get("max_minor"),
            )
            for f in reference.get("fee_schedule", [])
        }
    )  # fmt: skip


def hold_life_s(reference: Mapping[str, Any], channel: str, default_s: int) -> int:
    """How long a hold lives on ``channel`` (MAD): the reference's ``hold_expiry_s``, else
    the default, as settlement reads it."""
    for limit in reference.get("channel_limits", []):
        if limit["channel"] == channel and limit["currency"] == CURRENCY:
            return int(limit.get("hold_expiry_s") or default_s)
    return default_s


class Minter:
    """Seeded payment records and signed messages for one run; not thread-safe.

    ``payers`` are the customers an ordinary payment debits (all, unless a generator
    sets some aside); ``topic`` is where the messages will be published (their
    signatures cover it).
    """

    def __init__(
        self,
        accounts: Accounts,
        seed: int,
        start: datetime,
        codec: AvroCodec,
        topic: str,
        signers: Signers,
    ) -> None:
        if start.utcoffset() is None:
            raise ValueError("start must be a timezone-aware datetime")
        self.accounts = accounts
        self.rng = random.Random(seed)
        self.seed = seed
        self.start = start
        self.codec = codec
        self.topic = topic
        self.signers = signers
        self.payers = list(accounts.customers)
        self._count = 0

    def new_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def record(
        self, payer: tuple[str, str] | None = None, reference: str | None = None, **fields: Any
    ) -> dict[str, Any]:
        """A PaymentInitiated record: a MOBILE transfer to another customer, unless
        ``fields`` say otherwise; its time ``start`` plus a millisecond per record."""
        self._count += 1
        event_id, payment_id = self.new_id(), self.new_id()
        bank, number = payer or self.rng.choice(self.payers)
        payee_bank, payee = self.other_customer(number)
        record: dict[str, Any] = {
            "event_id": event_id,
            "payment_id": payment_id,
            "bank_reference": reference or f"CH{self.seed % 10**6:06d}-{self._count:08d}",
            "occurred_at": self.start + timedelta(milliseconds=self._count),
            "payer_bank": bank, "payer_account": number,
            "payee_bank": payee_bank, "payee_account": payee,
            "amount_minor": self.rng.randint(1_000, 50_000), "currency": CURRENCY,
            "channel": "MOBILE", "payment_type": "TRANSFER",
            "merchant_category_code": None, "egov_service": None, "intent": "SALE",
            "remittance_info": None,
        }  # fmt: skip
        record.update(fields)
        return record

    def other_customer(self, number: str) -> tuple[str, str]:
        while True:
            bank, other = self.rng.choice(self.accounts.customers)
            if other != number:
                return bank, other

    def message(self, record: dict[str, Any], label: str) -> Message:
        """A payment's message, signed by its payer's bank."""
        key, value = PAYMENT_INITIATED.key(record), self.codec.encode(EVENT_TYPE, record)
        headers = self.signed(record["payer_bank"], key, value)
        return Message(key, value, label, switch_id_of(record), headers)

    def message_of(self, key: bytes | None, value: bytes | None, label: str, bank: str) -> Message:
        """A message that creates no payment (a step, poison), signed by ``bank``."""
        return Message(key, value, label, None, self.signed(bank, key, value))

    def signed(self, bank: str, key: bytes | None, value: bytes | None) -> Headers:
        """The headers ``bank`` signs a message with (an empty message: over no bytes)."""
        return self.signers.headers(bank, self.topic, key, value or b"")
