"""The messages a chaos run publishes, and what each one must end as.

Everything comes from one ``random.Random(seed)``: the same seed and start time give
the same bytes in the same order. Four families:

- good payments from every channel (each settles, or fails AM04 when funds run short);
- absurd payments that decode but must be rejected with a fixed reason (negative, zero
  or huge amounts, unknown currency, a 1 MB bank reference, unknown/closed/blocked
  accounts) and bank re-submissions of a used reference (AM05);
- poison that must be dead-lettered: random bytes, truncated Avro, an unknown schema
  fingerprint, an empty message, a 1 MB blob (its dead-letter copy is truncated) and an
  event reusing another payment's id;
- bank retries: byte-identical copies of earlier payments, which must change nothing;
- the lifecycle (:mod:`tooling.workload.flows`): authorizations captured, voided or left
  to expire, purchases refunded, transfers returned, and steps that must be refused, each
  step right after its payment on the payer's key. Their payers are customers set aside,
  which no ordinary payment debits, so funds never decide their outcomes.

Dependants (copies, re-submissions, reused ids) carry their original's key, so they
sit on its partition, after it: their outcome does not depend on scheduling.

Every message is signed as a bank signs it (:func:`chaos_signers`, one reproducible key
per bank of the reference data, which the harness registers): a payment by its payer's
bank, poison by a bank too, so that poison stays poison (dead-lettered for what its bytes
are, never refused as a forgery), and a bank retry carries its original's signature.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from engine.config import Settings
from engine.events import PAYMENT_INITIATED
from engine.ids import switch_id_of
from engine.ledger.models import AccountKind
from engine.ledger.reference import internal_account
from engine.serialization import HEADER_BYTES, MARKER, AvroCodec
from producers.signing import Signers
from tooling.workload.core import (
    DEFAULT_TOPIC,
    EVENT_TYPE,
    Accounts,
    ExpectedStep,
    Message,
    Minter,
    hold_life_s,
    workload_signers,
)
from tooling.workload.flows import Flow, LifecycleFlows
from tooling.workload.pressing import PressingPlan, mint_pressing, pressing_payments
from tooling.workload.profiles import CHAOS

MEGABYTE = 1_000_000
MAX_PAYMENTS = 1_000_000

# label -> the dead-letter kind the validator must record
POISON_KINDS: Mapping[str, str] = {
    "random_bytes": "undecodable",
    "truncated_avro": "undecodable",
    "unknown_fingerprint": "schema_not_approved",
    "empty_message": "undecodable",
    "megabyte_blob": "undecodable",
    "payment_id_reused": "payment_id_reused",
    "kills_consumer": "poison",  # kills the validator process: quarantined after MAX_DEATHS
}
# label -> the ISO 20022 reason the validator must reject with
ABSURD_REASONS: Mapping[str, str] = {
    "negative_amount": "AM12",
    "zero_amount": "AM12",
    "huge_amount": "AM02",
    "unknown_currency": "AM03",
    "megabyte_reference": "CH16",
    "unknown_account": "AC01",
    "closed_account": "AC04",
    "blocked_account": "AC06",
    "resubmitted_reference": "AM05",
}
ONE_PER_RUN = frozenset({"megabyte_reference", "megabyte_blob", "kills_consumer"})  # costly
# In the remittance info of the one payment that kills its consumer: the harness's
# consumers run with SAKK_CRASH_ON_MESSAGE_CONTAINING set to it (engine.pipeline.crash).
KILLER_MARK = "chaos poison: kills its consumer"
GOOD_OUTCOMES: Mapping[str, str | None] = {"SETTLED": None, "FAILED": "AM04"}


def chaos_signers(reference: Mapping[str, Any], seed: int) -> Signers:
    """The banks' keys of a chaos run: one per bank of ``reference``, the same for a seed."""
    return workload_signers(reference, f"chaos/{seed}")


@dataclass(frozen=True, slots=True)
class ExpectedPayment:
    """A payment the ledger must hold, in one of ``outcomes`` (state -> required reason)."""

    payment_id: str
    label: str
    outcomes: Mapping[str, str | None]
    captured_minor: int | None = None  # a lifecycle payment's amounts at the end
    refunded_minor: int | None = None


@dataclass
class Workload:
    seed: int
    messages: list[Message]
    payments: dict[str, ExpectedPayment]
    dead_letters: Counter[str] = field(default_factory=Counter)  # dead-letter kind -> count
    steps: dict[str, ExpectedStep] = field(default_factory=dict)  # step id -> expected
    pressing: PressingPlan | None = None  # the banks pressed on their limits, if any

    @property
    def labels(self) -> Counter[str]:
        return Counter(m.label for m in self.messages)

    @property
    def poison(self) -> int:
        return sum(self.dead_letters.values())

    @property
    def bank_retries(self) -> int:
        return self.labels["bank_retry"]

    @property
    def published(self) -> int:
        """What must add up: one per payment plus one per poison message (copies add none)."""
        return len(self.payments) + self.poison


class WorkloadBuilder:
    """Builds a :class:`Workload`; one instance per run, not thread-safe.

    ``topic`` is where the messages will be published (their signatures cover it);
    ``signers`` default to :func:`chaos_signers` of the reference and seed.
    """

    def __init__(
        self,
        reference: Mapping[str, Any],
        seed: int,
        start: datetime,
        codec: AvroCodec,
        topic: str = DEFAULT_TOPIC,
        signers: Signers | None = None,
        hold_expiry_default_s: int = Settings.hold_expiry_s,
        pressing: PressingPlan | None = None,
    ):
        if start.utcoffset() is None:
            raise ValueError("start must be a timezone-aware datetime")
        self.accounts = Accounts.of(reference)
        if (
            len(self.accounts.customers) < 2
            or not self.accounts.merchants
            or not self.accounts.government
        ):
            raise ValueError(
                "reference data needs 2+ active MAD customers, a merchant and a government account"
            )
        # The pressing banks (tooling.workload.pressing) are not in ``reference``: the
        # other banks' traffic is drawn from it alone, the same bytes with or without them.
        self.pressing = pressing
        signers = signers or chaos_signers(
            pressing.extend(reference) if pressing else reference, seed
        )
        self.mint = Minter(self.accounts, seed, start, codec, topic, signers)
        self.rng = self.mint.rng
        self.seed = seed
        self.start = start
        self.codec = codec
        self.topic = topic
        self.signers = signers
        # Customers set aside for the lifecycle: no ordinary payment debits them.
        customers = self.accounts.customers
        aside = self.rng.sample(customers, len(customers) // 3)
        self.mint.payers = self.payers = [c for c in customers if c not in aside]
        life = timedelta(seconds=hold_life_s(reference, "POS", hold_expiry_default_s))
        self.lifecycle = LifecycleFlows(self.mint, reference, aside, life) if aside else None

    def build(self, payments: int) -> Workload:
        """``payments`` distinct payments, plus poison and bank retries in proportion."""
        if not 1 <= payments <= MAX_PAYMENTS:
            raise ValueError(f"payments={payments} must be in [1, {MAX_PAYMENTS}]")
        rng = self.rng
        absurd_labels = self._spread(list(ABSURD_REASONS), max(1, payments * 8 // 100), payments)
        slots: list[tuple[float, Message]] = []
        expected: dict[str, ExpectedPayment] = {}
        goods: list[tuple[float, Message, dict[str, Any]]] = []
        n_good = payments - len(absurd_labels)
        flows = self._flows(n_good * CHAOS.lifecycle_percent // 100)
        for flow in flows:
            slots += self._placed(flow.messages, rng.uniform(0, payments))
            expected[switch_id_of(flow.payment)] = ExpectedPayment(
                switch_id_of(flow.payment), flow.label, {flow.state: None},
                flow.captured_minor, flow.refunded_minor,
            )  # fmt: skip
        for _ in range(n_good - len(flows)):
            record = self._good_record()
            message = self.mint.message(record, "payment")
            position = rng.uniform(0, payments)
            slots.append((position, message))
            goods.append((position, message, record))
            expected[switch_id_of(record)] = ExpectedPayment(
                switch_id_of(record), "payment", GOOD_OUTCOMES
            )
        for label in absurd_labels:
            if label == "resubmitted_reference" and goods:
                position, original, record = rng.choice(goods)
                again = self.mint.record(
                    payer=(record["payer_bank"], record["payer_account"]),
                    reference=record["bank_reference"],
                )
                position = rng.uniform(position, payments + 1)
            else:
                again = self._absurd_record(label)
                position = rng.uniform(0, payments)
            slots.append((position, self.mint.message(again, label)))
            expected[switch_id_of(again)] = ExpectedPayment(
                switch_id_of(again), label, {"REJECTED": ABSURD_REASONS[label]}
            )
        dead_letters: Counter[str] = Counter()
        for label in self._spread(list(POISON_KINDS), max(1, payments * 5 // 100), payments):
            position, message = self._poison(label, goods, payments)
            slots.append((position, message))
            dead_letters[POISON_KINDS.get(message.label, "undecodable")] += 1
        for _ in range(max(1, payments // 10) if goods else 0):
            position, original, _record = rng.choice(goods)
            for _copy in range(rng.randint(1, 4)):
                copy = Message(original.key, original.value, "bank_retry", None, original.headers)
                slots.append((rng.uniform(position, payments + 1), copy))
        slots += self._step_retries(slots, payments)
        slots += self._pressing(expected, payments)  # last: their own generator
        slots.sort(key=lambda s: s[0])  # stable: equal positions keep their creation order
        steps = {s.step_id: s for flow in flows for s in flow.steps}
        return Workload(
            self.seed, [m for _, m in slots], expected, dead_letters, steps, self.pressing
        )

    def _pressing(
        self, expected: dict[str, ExpectedPayment], payments: int
    ) -> list[tuple[float, Message]]:
        """The pressing banks' payments: each settles or fails for its bank's limit."""
        if self.pressing is None:
            return []
        made = pressing_payments(self.pressing, self.accounts.customers, self.start, payments)
        for p in made:
            pid = switch_id_of(p.record)
            expected[pid] = ExpectedPayment(pid, p.label, {"SETTLED": None, "FAILED": p.reason})
        return mint_pressing(self.mint, made)

    def _flows(self, count: int) -> list[Flow]:
        """Up to ``count`` lifecycle flows (fewer when the set-aside accounts run out)."""
        if self.lifecycle is None:
            return []
        made = (self.lifecycle.make(label) for label in self.lifecycle.labels(count))
        return [flow for flow in made if flow is not None]

    def _placed(self, messages: list[Message], position: float) -> list[tuple[float, Message]]:
        """A payment at ``position`` and its steps soon after it, in their order."""
        placed = [(position, messages[0])]
        for message in messages[1:]:
            position += self.rng.uniform(0, 3)
            placed.append((position, message))
        return placed

    def _step_retries(
        self, slots: list[tuple[float, Message]], payments: int
    ) -> list[tuple[float, Message]]:
        """Byte-identical copies of a few steps, each after its original: no effect."""
        steps = [(p, m) for p, m in slots if m.label.startswith("step_")]
        copies = []
        for _ in range(len(steps) // 10):
            position, original = self.rng.choice(steps)
            copy = Message(original.key, original.value, "bank_retry", None, original.headers)
            copies.append((self.rng.uniform(position, payments + 1), copy))
        return copies

    def _spread(self, labels: list[str], total: int, payments: int) -> list[str]:
        """``total`` labels, every one at least once, those of ONE_PER_RUN exactly once."""
        chosen = list(labels)
        repeatable = [label for label in labels if label not in ONE_PER_RUN]
        while len(chosen) < total:
            chosen.append(self.rng.choice(repeatable))
        return chosen if payments >= len(labels) * 4 else chosen[: max(1, payments // 4)]

    # -- records ---------------------------------------------------------------------------

    def _good_record(self) -> dict[str, Any]:
        rng = self.rng
        amount = rng.choice(
            (
                rng.randint(1_000, 50_000),
                rng.randint(50_000, 500_000),
                rng.randint(500_000, 2_000_000),
            )
        )
        kind = rng.choices(("transfer", "purchase", "cash", "egov"), (5, 3, 1, 1))[0]
        if kind == "transfer":
            return self.mint.record(
                channel=rng.choice(("WEB", "MOBILE", "BRANCH")), amount_minor=amount
            )
        if kind == "purchase":
            bank, number, mcc = rng.choice(self.accounts.merchants)
            return self.mint.record(
                channel=rng.choice(("WEB", "POS", "MOBILE")),
                payment_type="PURCHASE",
                payee_bank=bank,
                payee_account=number,
                merchant_category_code=mcc,
                amount_minor=amount,
            )
        if kind == "cash":
            record = self.mint.record(
                channel="ATM", payment_type="CASH_WITHDRAWAL", amount_minor=min(amount, 200_000)
            )
            record["payee_bank"] = record["payer_bank"]
            record["payee_account"] = internal_account(
                record["payer_bank"], AccountKind.CASH, "MAD"
            )
            return record
        bank, number, service = rng.choice(self.accounts.government)
        return self.mint.record(
            channel="EGOV",
            payment_type="EGOV",
            payee_bank=bank,
            payee_account=number,
            egov_service=service,
            amount_minor=amount,
        )

    def _absurd_record(self, label: str) -> dict[str, Any]:
        rng = self.rng
        if label == "negative_amount":
            return self.mint.record(amount_minor=-rng.randint(1, 10**12))
        if label == "zero_amount":
            return self.mint.record(amount_minor=0)
        if label == "huge_amount":
            return self.mint.record(amount_minor=rng.choice((10**15 + 1, 2**63 - 1, 2_000_001)))
        if label == "unknown_currency":
            return self.mint.record(currency=rng.choice(("XYZ", "MA", "DIRHAM", "")))
        if label == "megabyte_reference":
            return self.mint.record(reference="R" * MEGABYTE)
        if label == "unknown_account":
            bank = rng.choice(self.accounts.banks)
            return self.mint.record(
                payee_bank=bank, payee_account=f"{bank}{rng.getrandbits(64):021d}"[:24]
            )
        pool = self.accounts.closed if label == "closed_account" else self.accounts.blocked
        if not pool:
            raise ValueError(f"reference data has no {label.split('_')[0]} customer account")
        bank, number = rng.choice(pool)
        return self.mint.record(payee_bank=bank, payee_account=number)

    # -- poison ----------------------------------------------------------------------------

    def _poison(self, label: str, goods: list, payments: int) -> tuple[float, Message]:
        rng = self.rng
        position = rng.uniform(0, payments)
        key = rng.randbytes(8)
        bank = self.accounts.customers[0][0]  # poison comes from a bank too: signed by it
        if label == "random_bytes":
            value = bytes([rng.randrange(0xC3)]) + rng.randbytes(rng.randint(0, 300))
        elif label == "megabyte_blob":
            value = b"\x00" + rng.randbytes(MEGABYTE - 1)
        elif label == "empty_message":
            value = None
        elif label == "truncated_avro":
            record = self.mint.record()
            full, bank = self.codec.encode(EVENT_TYPE, record), record["payer_bank"]
            value = full[: rng.randint(HEADER_BYTES + 1, len(full) - 1)]
        elif label == "unknown_fingerprint":
            record = self.mint.record()
            full, bank = self.codec.encode(EVENT_TYPE, record), record["payer_bank"]
            value = MARKER + rng.randbytes(8) + full[HEADER_BYTES:]
        elif label == "kills_consumer":  # a bank's signed payment that crashes its decoder
            record = self.mint.record(remittance_info=KILLER_MARK)
            key, value = PAYMENT_INITIATED.key(record), self.codec.encode(EVENT_TYPE, record)
            bank = record["payer_bank"]
        elif label == "payment_id_reused" and goods:
            position, _original, record = rng.choice(goods)
            event_id, _ = self.mint.new_id(), self.mint.new_id()
            reused = {**record, "event_id": event_id, "amount_minor": record["amount_minor"] + 1}
            key, value = PAYMENT_INITIATED.key(record), self.codec.encode(EVENT_TYPE, reused)
            bank = record["payer_bank"]
            position = rng.uniform(position, payments + 1)
        else:  # payment_id_reused without a good payment to reuse: plain garbage instead
            label, value = "random_bytes", b"\x01poison"
        return position, self.mint.message_of(key, value, label, bank)
