"""A ledger of many payments, written straight to the database for the read-side benchmark.

A million payments through the broker and the three stages would take hours; the read
side only needs the rows they leave. This loader writes those rows in bulk (SQLite:
``executemany`` in large transactions with the journal relaxed for the load;
PostgreSQL: ``COPY``), deterministic from a seed, in the proportions a demo run leaves
(``sakk demo``): card authorizations held then captured, voided or expired; refunds and
returns; rejections and failures with their ISO reason codes; one notification per
bank told, most delivered at the first attempt, some after retries, a few given up.

What holds of the rows written:

- every payment has its bank reference (``bank_references``), its state changes,
  the events each stage handled and emitted, and its notifications with their attempts;
- a settled payment, a capture, a refund and a return each have a posting whose entries
  sum to zero, chained per chain key with the real entry hashes
  (``engine.ledger.postings``), and the accounts' balances and the banks' posted
  positions are moved by them;
- every payment is signed by its payer bank's key (registered in ``bank_keys``); the
  signature bytes are filler: the read side shows the signer and the key, and nothing
  here verifies them.

The reference data is ``reference/morocco.json`` (banks, fee rules, limits, internal
accounts), plus generated customers and merchants so that a search by the last four
digits of an account finds a handful of payments, as it would in a real switch.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, select, text

from engine.ledger.models import AccountKind, LedgerChainHead, Payment
from engine.ledger.positions import (
    LOAD_SOURCE,
    PositionMoved,
    journal_limits,
    move_positions,
    read_banks,
)
from engine.ledger.postings import GENESIS_HASH, leg_hash, posting_part
from engine.ledger.reference import internal_account, load_reference_data
from engine.trust.keys import KeyPair, encode_public

MAX_PAYMENTS = 10_000_000
CHUNK_PAYMENTS = 25_000  # payments generated and written per transaction
SPAN_DAYS = 30  # the payments' times spread over this many days before END
END = datetime(2026, 11, 30, tzinfo=UTC)
CHAINS = 6  # the chain keys (partitions of the settlement input topic)
PAYMENTS_PER_CUSTOMER = 50
PAYMENTS_PER_MERCHANT = 500
CURRENCY = "MAD"
TREASURY = "310"  # the bank of the government's accounts (e-government payments)

# (channel, payment type, payee kind, weight): the demo's mix.
KINDS: tuple[tuple[str, str, str, int], ...] = (
    ("ATM", "CASH_WITHDRAWAL", "CASH", 15),
    ("BRANCH", "TRANSFER", "CUSTOMER", 5),
    ("EGOV", "EGOV", "GOVERNMENT", 8),
    ("MOBILE", "EGOV", "GOVERNMENT", 2),
    ("MOBILE", "PURCHASE", "MERCHANT", 5),
    ("MOBILE", "TRANSFER", "CUSTOMER", 14),
    ("POS", "PURCHASE", "MERCHANT", 20),
    ("WEB", "EGOV", "GOVERNMENT", 5),
    ("WEB", "PURCHASE", "MERCHANT", 18),
    ("WEB", "TRANSFER", "CUSTOMER", 8),
)
CARD = {("POS", "PURCHASE"), ("WEB", "PURCHASE")}
AUTHORIZATION_SHARE = 0.25  # of card purchases: a hold first
REJECTIONS = (  # reason code, message, share of payments
    ("AC01", "payee account ****{last4} is unknown at bank {payee_bank}", 0.015),
    ("AC04", "payer account ****{last4} is closed", 0.012),
    ("AM02", "{amount} MAD is above the {channel} limit", 0.009),
    ("AM05", "bank {payer_bank} already sent reference {reference}", 0.014),
)
FAILED_SHARE = 0.017  # AM04, insufficient funds, decided by settlement
REFUND_SHARE = 0.03  # of settled web purchases
RETURN_SHARE = 0.01  # of settled transfers
MCC = ("5411", "4511", "5311", "5541", "4814", "7011")
EGOV_SERVICES = ("VIGNETTE", "VIGNETTE", "VIGNETTE", "TAXE_HABITATION", "IMPOT_SUR_LE_REVENU")
STAGES = ("validator", "settlement", "notification")
RETRY_ERRORS = ("HTTP 503 from the bank's webhook", "timed out after 5.0 s", "connection refused")


@dataclass
class Tables:
    """Rows per table, as tuples in ``COLUMNS`` order."""

    rows: dict[str, list[tuple[Any, ...]]] = field(default_factory=lambda: defaultdict(list))

    def add(self, table: str, row: tuple[Any, ...]) -> None:
        self.rows[table].append(row)

    def count(self) -> int:
        return sum(len(r) for r in self.rows.values())


COLUMNS: dict[str, tuple[str, ...]] = {
    "payments": (
        "payment_id",
        "initiated_event_id",
        "bank_reference",
        "payer_bank",
        "payer_account",
        "payee_bank",
        "payee_account",
        "amount_minor",
        "currency",
        "channel",
        "payment_type",
        "merchant_category_code",
        "egov_service",
        "occurred_at",
        "state",
        "reason_code",
        "reason_message",
        "fee_minor",
        "posting_id",
        "settlement_window",
        "signer_bank",
        "signer_key_id",
        "signature",
        "signed_digest",
        "intent",
        "captured_minor",
        "refunded_minor",
        "remittance_info",
    ),
    "bank_references": ("bank_code", "bank_reference", "payment_id"),
    "holds": (
        "payment_id",
        "account_number",
        "bank_code",
        "currency",
        "amount_minor",
        "fee_minor",
        "reserved_minor",
        "captured_minor",
        "state",
        "occurred_at",
        "expires_at",
        "resolved_at",
        "resolved_by",
    ),
    "payment_steps": (
        "step_id",
        "payment_id",
        "kind",
        "sender_bank",
        "bank_reference",
        "occurred_at",
        "amount_minor",
        "fee_minor",
        "currency",
        "outcome",
        "reason_code",
        "reason_message",
        "posting_id",
        "settlement_window",
    ),
    "payment_transitions": (
        "payment_id",
        "from_state",
        "to_state",
        "reason_code",
        "consumer",
        "event_id",
        "occurred_at",
    ),
    "postings": ("posting_id", "payment_id", "kind", "occurred_at", "settlement_window"),
    "ledger_entries": (
        "posting_id",
        "account_number",
        "amount_minor",
        "currency",
        "chain_id",
        "chain_seq",
        "prev_hash",
        "entry_hash",
    ),
    "handled_events": (
        "consumer",
        "event_id",
        "event_type",
        "payment_id",
        "topic",
        "partition",
        "offset",
        "outcome",
        "handled_at",
    ),
    "emitted_events": (
        "consumer",
        "source_event_id",
        "event_id",
        "payment_id",
        "topic",
        "key",
        "value",
    ),
    "notifications": (
        "notification_id",
        "payment_id",
        "outcome",
        "recipient_bank",
        "sender",
        "status",
        "attempts",
        "last_error",
        "payload",
        "source_event_id",
        "created_at",
        "finished_at",
        "next_attempt_at",
        "deadline_at",
        "claim_token",
        "announced_at",
        "round",
    ),
    "notification_attempts": (
        "notification_id",
        "number",
        "started_at",
        "duration_ms",
        "status_code",
        "error",
    ),
}
# Parents first: PostgreSQL checks the foreign keys row by row.
TABLE_ORDER = tuple(COLUMNS)


@dataclass(frozen=True)
class LoadResult:
    payments: int
    rows: int
    seconds: float


class Clock:
    """Times as the database stores them, formatted fast (a million payments, many times each)."""

    def __init__(self, postgres: bool):
        self.suffix = "+00" if postgres else ""
        self._seconds: dict[int, str] = {}

    def text(self, at: float) -> str:
        whole, micros = divmod(int(at * 1_000_000), 1_000_000)  # as moment() reads it
        base = self._seconds.get(whole)
        if base is None:
            if len(self._seconds) > 200_000:
                self._seconds.clear()
            base = datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%d %H:%M:%S")
            self._seconds[whole] = base
        return f"{base}.{micros:06d}{self.suffix}"


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def moment(at: float) -> datetime:
    """The instant ``Clock.text`` writes for ``at``, to the microsecond (entries hash it)."""
    return EPOCH + timedelta(microseconds=int(at * 1_000_000))


@dataclass
class Reference:
    """What payments are made of: banks, their keys, accounts by kind, fee rules."""

    banks: list[str]
    keys: dict[str, str]  # bank -> key id
    customers: dict[str, list[str]]
    merchants: dict[str, list[str]]
    government: list[str]
    fees: dict[tuple[str, str], tuple[int, int, int | None]]


def _uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{h[16:20]}-{h[20:]}"


def _account_number(rng: random.Random, bank: str) -> str:
    return f"{bank}{rng.getrandbits(72) % 10**21:021d}"


class Generator:
    """Rows of payments, one chunk at a time, from one seeded random stream."""

    def __init__(
        self,
        ref: Reference,
        seed: int,
        payments: int,
        postgres: bool,
        heads: dict[int, tuple[int, str]],
    ):
        self.ref, self.rng, self.total = ref, random.Random(seed), payments
        self.clock = Clock(postgres)
        self.heads = dict(heads)
        self.start = (END - timedelta(days=SPAN_DAYS)).timestamp()
        self.step_s = SPAN_DAYS * 86_400 / max(payments, 1)
        self.balances: dict[str, int] = defaultdict(int)
        self.holds_minor: dict[str, int] = defaultdict(int)
        self.offsets: dict[tuple[str, int], int] = defaultdict(int)
        self.references = 0
        self.filler = random.Random(seed + 1).randbytes(4096)
        self.kind_weights = [k[3] for k in KINDS]

    # -- one payment -------------------------------------------------------------------

    def payment(self, t: Tables, index: int) -> None:
        rng = self.rng
        at = self.start + index * self.step_s + rng.random() * self.step_s
        channel, ptype, payee_kind, _ = rng.choices(KINDS, self.kind_weights)[0]
        payer_bank = rng.choice(self.ref.banks[:-1])  # the treasury pays nobody here
        payer = rng.choice(self.ref.customers[payer_bank])
        payee_bank, payee = self._payee(payer_bank, payee_kind)
        amount = self._amount(channel, ptype)
        auth = (channel, ptype) in CARD and rng.random() < AUTHORIZATION_SHARE
        p = _Pay(
            self, t, index, at, channel, ptype, payer_bank, payer, payee_bank, payee, amount, auth
        )
        p.write()

    def _payee(self, payer_bank: str, kind: str) -> tuple[str, str]:
        rng = self.rng
        if kind == "CASH":
            bank = payer_bank if rng.random() < 0.66 else rng.choice(self.ref.banks[:-1])
            return bank, internal_account(bank, AccountKind.CASH, CURRENCY)
        if kind == "GOVERNMENT":
            return TREASURY, rng.choice(self.ref.government)
        bank = payer_bank if rng.random() < 0.12 else rng.choice(self.ref.banks[:-1])
        pool = self.ref.merchants if kind == "MERCHANT" else self.ref.customers
        return bank, rng.choice(pool[bank])

    def _amount(self, channel: str, ptype: str) -> int:
        rng = self.rng
        if channel == "ATM":
            return rng.choice((100, 200, 300, 500, 1000, 2000)) * 100
        if ptype == "EGOV":
            return rng.choice((35000, 70000, 140000, 300000, 600000)) + rng.randrange(0, 500)
        scale = 500_000 if ptype == "TRANSFER" else 150_000
        return max(500, int(rng.expovariate(1 / scale)))

    def fee(self, channel: str, ptype: str, amount: int) -> int:
        if ptype == "EGOV":
            return 0  # the vignette, and every e-government payment, is free of charge
        fixed, bps, cap = self.ref.fees.get((channel, ptype), (0, 0, None))
        fee = fixed + amount * bps // 10_000
        return min(fee, cap) if cap is not None else fee

    # -- shared pieces -----------------------------------------------------------------

    def reference(self, bank: str) -> str:
        self.references += 1
        return f"{bank}-rl{self.references // 1_000_000:02d}-2026-{self.references:08d}"

    def handled(
        self,
        t: Tables,
        consumer: str,
        event_id: str,
        event_type: str,
        payment_id: str,
        topic: str,
        chain: int,
        outcome: str,
        at: float,
    ) -> None:
        self.offsets[(topic, chain)] += 1
        t.add(
            "handled_events",
            (
                consumer,
                event_id,
                event_type,
                payment_id,
                topic,
                chain,
                self.offsets[(topic, chain)],
                outcome,
                self.clock.text(at),
            ),
        )

    def emitted(
        self, t: Tables, consumer: str, source: str, payment_id: str, topic: str, key: bytes
    ) -> str:
        event_id = _uuid(self.rng)
        start = self.rng.randrange(0, 3700)
        value = self.filler[start : start + 190 + (start % 150)]
        t.add("emitted_events", (consumer, source, event_id, payment_id, topic, key, value))
        return event_id

    def posting(
        self,
        t: Tables,
        payment_id: str,
        kind: str,
        at: float,
        chain: int,
        legs: Sequence[tuple[str, int]],
    ) -> tuple[str, str]:
        """A posting and its chained entries; (posting id, settlement window)."""
        posting_id = _uuid(self.rng)
        when = moment(at)
        window = when.strftime("%Y-%m-%d")
        t.add("postings", (posting_id, payment_id, kind, self.clock.text(at), window))
        part = posting_part(posting_id, payment_id, kind, when, window)
        seq, prev = self.heads.get(chain, (0, GENESIS_HASH))
        for account, amount in legs:
            seq += 1
            digest = leg_hash(prev, seq, part, account, amount, CURRENCY)
            t.add(
                "ledger_entries", (posting_id, account, amount, CURRENCY, chain, seq, prev, digest)
            )
            prev = digest
            self.balances[account] += amount
        self.heads[chain] = (seq, prev)
        return posting_id, window

    def notify(
        self,
        t: Tables,
        payment_id: str,
        outcome: str,
        banks: Sequence[str],
        source: str,
        key: bytes,
        at: float,
        payload: str,
    ) -> None:
        rng, clock = self.rng, self.clock
        for bank in dict.fromkeys(banks):
            nid = _uuid(rng)
            tries = 1 if rng.random() < 0.96 else rng.randint(2, 4)
            gave_up = tries > 1 and rng.random() < 0.05
            when = at + 0.4 + rng.random() * 0.3
            for number in range(1, tries + 1):
                last = number == tries and not gave_up
                t.add(
                    "notification_attempts",
                    (
                        nid,
                        number,
                        clock.text(when),
                        rng.randint(3, 60),
                        200 if last else 503,
                        None if last else rng.choice(RETRY_ERRORS),
                    ),
                )
                when += 0 if last else 2.0**number
            status = "FAILED" if gave_up else "DELIVERED"
            error = rng.choice(RETRY_ERRORS) if tries > 1 else None
            t.add(
                "notifications",
                (
                    nid,
                    payment_id,
                    outcome,
                    bank,
                    "webhook",
                    status,
                    tries,
                    error,
                    payload,
                    source,
                    clock.text(at + 0.4),
                    clock.text(when),
                    None,
                    clock.text(at + 86_400.4),
                    None,
                    clock.text(when + 0.05),
                    0,
                ),
            )
            self.emitted(t, "notification", source, payment_id, "payments.notified", key)


class _Pay:
    """One payment's rows: written by :meth:`write` from what the generator chose."""

    def __init__(
        self,
        g: Generator,
        t: Tables,
        index: int,
        at: float,
        channel: str,
        ptype: str,
        payer_bank: str,
        payer: str,
        payee_bank: str,
        payee: str,
        amount: int,
        auth: bool,
    ):
        self.g, self.t, self.at = g, t, at
        self.channel, self.ptype, self.amount, self.auth = channel, ptype, amount, auth
        self.payer_bank, self.payer, self.payee_bank, self.payee = (
            payer_bank,
            payer,
            payee_bank,
            payee,
        )
        rng = g.rng
        self.payment_id = f"{payer_bank}:{_uuid(rng)}"
        self.event_id = f"{payer_bank}:{_uuid(rng)}"
        self.reference = g.reference(payer_bank)
        self.key = payer.encode()
        self.chain = int(hashlib.blake2b(self.key, digest_size=2).hexdigest(), 16) % CHAINS
        self.fee = g.fee(channel, ptype, amount)

    def write(self) -> None:
        g, rng = self.g, self.g.rng
        draw = rng.random()
        for code, message, share in REJECTIONS:
            if draw < share:
                return self._rejected(code, message)
            draw -= share
        if draw < FAILED_SHARE:
            return self._failed()
        if self.auth:
            return self._authorized()
        return self._settled(g)

    # -- the first answer --------------------------------------------------------------

    def _row(
        self,
        state: str,
        reason: str | None = None,
        message: str | None = None,
        fee: int | None = None,
        posting: str | None = None,
        window: str | None = None,
        captured: int | None = None,
        refunded: int = 0,
    ) -> None:
        g, rng = self.g, self.g.rng
        mcc = (
            rng.choice(MCC)
            if self.ptype == "PURCHASE"
            else ("9311" if self.ptype == "EGOV" else None)
        )
        egov = rng.choice(EGOV_SERVICES) if self.ptype == "EGOV" else None
        digest = hashlib.sha256(self.event_id.encode()).digest()
        self.t.add(
            "payments",
            (
                self.payment_id,
                self.event_id,
                self.reference,
                self.payer_bank,
                self.payer,
                self.payee_bank,
                self.payee,
                self.amount,
                CURRENCY,
                self.channel,
                self.ptype,
                mcc,
                egov,
                g.clock.text(self.at),
                state,
                reason,
                message,
                fee,
                posting,
                window,
                self.payer_bank,
                g.ref.keys[self.payer_bank],
                digest + digest,
                digest,
                "AUTHORIZATION" if self.auth else "SALE",
                captured,
                refunded,
                None,
            ),
        )
        self.t.add("bank_references", (self.payer_bank, self.reference, self.payment_id))

    def _payload(self, **extra: Any) -> str:
        fields = {
            "amount_minor": self.amount,
            "bank_reference": self.reference,
            "channel": self.channel,
            "currency": CURRENCY,
            "payee_account": self.payee,
            "payee_bank": self.payee_bank,
            "payer_account": self.payer,
            "payer_bank": self.payer_bank,
            "payment_id": self.payment_id,
            **extra,
        }
        return "{" + ", ".join(f'"{k}": {_json(v)}' for k, v in sorted(fields.items())) + "}"

    def _rejected(self, code: str, message: str) -> None:
        g, at = self.g, self.at
        words = message.format(
            last4=self.payee[-4:],
            payee_bank=self.payee_bank,
            amount=f"{self.amount / 100:,.2f}",
            channel=self.channel,
            payer_bank=self.payer_bank,
            reference=self.reference,
        )
        self._row("REJECTED", code, words)
        self._transition(None, "REJECTED", code, "validator", self.event_id, at)
        g.handled(
            self.t,
            "validator",
            self.event_id,
            "PaymentInitiated",
            self.payment_id,
            "payments.initiated",
            self.chain,
            "rejected",
            at + 0.2,
        )
        out = g.emitted(
            self.t, "validator", self.event_id, self.payment_id, "payments.rejected", self.key
        )
        self._told(
            out,
            "PaymentRejected",
            "payments.rejected",
            "REJECTED",
            [self.payer_bank],
            self._payload(reason_code=code, reason_message=words),
        )

    def _validated(self) -> str:
        g, at = self.g, self.at
        self._transition(None, "VALIDATED", None, "validator", self.event_id, at)
        g.handled(
            self.t,
            "validator",
            self.event_id,
            "PaymentInitiated",
            self.payment_id,
            "payments.initiated",
            self.chain,
            "validated",
            at + 0.2,
        )
        validated = g.emitted(
            self.t, "validator", self.event_id, self.payment_id, "payments.validated", self.key
        )
        return validated

    def _decided(self, validated: str, outcome: str, topic: str) -> str:
        self.g.handled(
            self.t,
            "settlement",
            validated,
            "PaymentValidated",
            self.payment_id,
            "payments.validated",
            self.chain,
            outcome,
            self.at + 0.3,
        )
        return self.g.emitted(self.t, "settlement", validated, self.payment_id, topic, self.key)

    def _failed(self) -> None:
        validated = self._validated()
        words = (
            f"needs {(self.amount + self.fee) / 100:,.2f} MAD (fee included), "
            f"{self.g.rng.randrange(0, self.amount) / 100:,.2f} MAD available"
        )
        self._row("FAILED", "AM04", words)
        self._transition("VALIDATED", "FAILED", "AM04", "settlement", validated, self.at)
        out = self._decided(validated, "failed", "payments.failed")
        self._told(
            out,
            "PaymentFailed",
            "payments.failed",
            "FAILED",
            [self.payer_bank],
            self._payload(reason_code="AM04", reason_message=words),
        )

    def _legs(self, amount: int, fee: int) -> list[tuple[str, int]]:
        legs = [(self.payer, -(amount + fee)), (self.payee, amount)]
        if fee:
            legs.append((internal_account(self.payer_bank, AccountKind.FEE_INCOME, CURRENCY), fee))
        if self.payer_bank != self.payee_bank:
            legs += [
                (internal_account(self.payer_bank, AccountKind.SETTLEMENT, CURRENCY), amount),
                (internal_account(self.payee_bank, AccountKind.SETTLEMENT, CURRENCY), -amount),
            ]
        return legs

    def _settled(self, g: Generator) -> None:
        validated = self._validated()
        posting, window = g.posting(
            self.t,
            self.payment_id,
            "PAYMENT",
            self.at,
            self.chain,
            self._legs(self.amount, self.fee),
        )
        refunded, state, step = 0, "SETTLED", None
        if self.ptype == "PURCHASE" and self.channel == "WEB" and g.rng.random() < REFUND_SHARE:
            refunded, state, step = self.amount, "REFUNDED", "REFUND"
        elif self.ptype == "TRANSFER" and g.rng.random() < RETURN_SHARE:
            refunded, state, step = self.amount, "RETURNED", "RETURN"
        self._row(
            state,
            fee=self.fee,
            posting=posting,
            window=window,
            captured=self.amount,
            refunded=refunded,
        )
        settled = self._transition("VALIDATED", "SETTLED", None, "settlement", validated, self.at)
        out = self._decided(validated, "settled", "payments.settled")
        self._told(
            out,
            "PaymentSettled",
            "payments.settled",
            "SETTLED",
            [self.payer_bank, self.payee_bank],
            self._payload(fee_minor=self.fee, posting_id=posting, settlement_window=window),
        )
        if step is not None and settled:
            at = min(self.at + g.rng.uniform(3_600, 86_400), END.timestamp())
            self._step(
                step,
                self.payee_bank,
                at,
                self.amount,
                "SETTLED",
                state,
                [(self.payee, -self.amount), (self.payer, self.amount)],
            )

    def _authorized(self) -> None:
        g = self.g
        validated = self._validated()
        self._transition("VALIDATED", "AUTHORIZED", None, "settlement", validated, self.at)
        out = self._decided(validated, "authorized", "payments.steps")
        expires = self.at + 7 * 86_400 if self.channel == "WEB" else self.at + 3 * 86_400
        resolve = self.at + g.rng.uniform(60, 6 * 3_600)
        draw = g.rng.random()
        if resolve > END.timestamp():
            kind, state = None, "AUTHORIZED"
        elif draw < 0.86:
            kind, state = "CAPTURE", "CAPTURED"
        elif draw < 0.985:
            kind, state = "VOID", "VOIDED"
        else:
            kind, state, resolve = "EXPIRE", "EXPIRED", min(expires, END.timestamp())
        captured = self.amount if kind == "CAPTURE" else 0
        self._row(state, fee=self.fee, captured=captured)
        self._told(
            out,
            "PaymentStepCompleted",
            "payments.steps",
            "AUTHORIZE",
            [self.payer_bank, self.payee_bank],
            self._payload(payment_state="AUTHORIZED", step="AUTHORIZE", held_minor=self.amount),
        )
        step_id = None
        if kind == "CAPTURE":
            step_id = self._step(
                kind,
                self.payee_bank,
                resolve,
                self.amount,
                "AUTHORIZED",
                state,
                self._legs(self.amount, self.fee),
            )
        elif kind is not None:
            step_id = self._step(
                kind,
                self.payer_bank if kind == "VOID" else "",
                resolve,
                None,
                "AUTHORIZED",
                state,
                [],
            )
        elif self.payer_bank != self.payee_bank:
            g.holds_minor[self.payer_bank] += self.amount
        self._hold(state, expires, resolve if kind else None, step_id)

    def _hold(
        self, state: str, expires: float, resolved: float | None, step_id: str | None
    ) -> None:
        clock = self.g.clock
        hold_state = {"CAPTURED": "CAPTURED", "VOIDED": "VOIDED", "EXPIRED": "EXPIRED"}.get(
            state, "ACTIVE"
        )
        captured = self.amount if state == "CAPTURED" else 0
        reserved = self.amount + self.fee if hold_state == "ACTIVE" else 0
        row = (
            self.payment_id,
            self.payer,
            self.payer_bank,
            CURRENCY,
            self.amount,
            self.fee,
            reserved,
            captured,
            hold_state,
            clock.text(self.at),
            clock.text(expires),
            clock.text(resolved) if resolved else None,
            step_id,
        )
        self.t.add("holds", row)

    def _step(
        self,
        kind: str,
        sender: str,
        at: float,
        amount: int | None,
        before: str,
        after: str,
        legs: list[tuple[str, int]],
    ) -> str:
        g, t, rng = self.g, self.t, self.g.rng
        expiry = kind == "EXPIRE"
        step_id = _uuid(rng) if expiry else f"{sender}:{_uuid(rng)}"
        reference = "" if expiry else g.reference(sender)
        posting = window = None
        if legs:
            posting, window = g.posting(t, self.payment_id, kind, at, self.chain, legs)
        t.add(
            "payment_steps",
            (
                step_id,
                self.payment_id,
                kind,
                sender or "SWITCH",
                reference,
                g.clock.text(at),
                amount,
                0,
                CURRENCY if amount else None,
                "APPLIED",
                None,
                None,
                posting,
                window,
            ),
        )
        if not expiry:
            t.add("bank_references", (sender, reference, self.payment_id))
            g.handled(
                t,
                "validator",
                step_id,
                "PaymentStepRequested",
                self.payment_id,
                "payments.initiated",
                self.chain,
                "step_validated",
                at + 0.2,
            )
            source = g.emitted(
                t, "validator", step_id, self.payment_id, "payments.validated", self.key
            )
        else:
            source = step_id
        outcome = {
            "CAPTURE": "captured",
            "VOID": "voided",
            "EXPIRE": "expired",
            "REFUND": "refunded",
            "RETURN": "returned",
        }[kind]
        g.handled(
            t,
            "settlement",
            source,
            "PaymentStepValidated",
            self.payment_id,
            "payments.validated",
            self.chain,
            outcome,
            at + 0.3,
        )
        self._transition(before, after, None, "settlement", source, at)
        out = g.emitted(t, "settlement", source, self.payment_id, "payments.steps", self.key)
        self._told(
            out,
            "PaymentStepCompleted",
            "payments.steps",
            kind,
            [self.payer_bank, self.payee_bank],
            self._payload(
                payment_state=after,
                step=kind,
                step_id=step_id,
                posting_id=posting,
                settlement_window=window,
            ),
            at,
        )
        return step_id

    def _transition(
        self,
        before: str | None,
        after: str,
        reason: str | None,
        consumer: str,
        event_id: str,
        at: float,
    ) -> bool:
        self.t.add(
            "payment_transitions",
            (self.payment_id, before, after, reason, consumer, event_id, self.g.clock.text(at)),
        )
        return True

    def _told(
        self,
        source: str,
        event_type: str,
        topic: str,
        outcome: str,
        banks: list[str],
        payload: str,
        at: float | None = None,
    ) -> None:
        at = self.at if at is None else at
        self.g.handled(
            self.t,
            "notification",
            source,
            event_type,
            self.payment_id,
            topic,
            self.chain,
            "notified",
            at + 0.4,
        )
        self.g.notify(self.t, self.payment_id, outcome, banks, source, self.key, at, payload)


def _json(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


# -- the reference data ------------------------------------------------------------------


def prepare_reference(engine: Engine, data: dict[str, Any], seed: int, payments: int) -> Reference:
    """Load the reference file, one signing key per bank, generated customers and merchants."""
    from engine.ledger.keys import KeyEntry, register_keys
    from engine.ledger.models import Account, table_of

    rng = random.Random(seed + 2)
    load_reference_data(engine, data)
    banks = [b["code"] for b in data["banks"] if b["code"] != TREASURY] + [TREASURY]
    pairs = {b: KeyPair.from_seed(f"read-bench:{seed}:{b}".encode()) for b in banks}
    entries = [
        KeyEntry(b, k.key_id, encode_public(k.public), END - timedelta(days=400))
        for b, k in pairs.items()
    ]
    given = data.get("accounts", [])
    # Payers are generated customers without an overdraft limit: they only pay here, so
    # their balances go below zero (the reference file's customers, limited, stay idle).
    customers: dict[str, list[str]] = {b: [] for b in banks}
    merchants = {
        b: [a["number"] for a in given if a["bank"] == b and a["kind"] == "MERCHANT"] for b in banks
    }
    government = [a["number"] for a in given if a["kind"] == "GOVERNMENT"]
    new: list[dict[str, Any]] = []
    paying = banks[:-1]
    for pool, per, kind in (
        (customers, PAYMENTS_PER_CUSTOMER, "CUSTOMER"),
        (merchants, PAYMENTS_PER_MERCHANT, "MERCHANT"),
    ):
        for i in range(max(1, payments // per // len(paying))):
            for bank in paying:
                number = _account_number(rng, bank)
                pool[bank].append(number)
                new.append(
                    {
                        "number": number,
                        "bank_code": bank,
                        "kind": kind,
                        "holder": f"{kind.title()} {bank}-{i:06d}",
                        "currency": CURRENCY,
                        "status": "ACTIVE",
                        "overdraft_limit_minor": None,
                        "balance_minor": 0,
                    }
                )
    with engine.begin() as conn:
        register_keys(conn, entries)
        for start in range(0, len(new), 5_000):
            conn.execute(table_of(Account).insert(), new[start : start + 5_000])
    fees = {
        (f["channel"], f["payment_type"]): (f["fixed_minor"], f["rate_bps"], f.get("max_minor"))
        for f in data.get("fee_schedule", [])
        if f["currency"] == CURRENCY
    }
    return Reference(
        banks, {b: k.key_id for b, k in pairs.items()}, customers, merchants, government, fees
    )


def chain_heads(engine: Engine) -> dict[int, tuple[int, str]]:
    h = LedgerChainHead.__table__
    with engine.connect() as conn:
        return {r.chain_id: (int(r.seq), r.head_hash) for r in conn.execute(select(h))}


# -- the writers -------------------------------------------------------------------------


class SqliteWriter:
    """``executemany`` per table, one transaction per chunk, the journal relaxed for the load."""

    def __init__(self, path: str):
        import sqlite3

        self.conn = sqlite3.connect(path, isolation_level=None)
        for pragma in (
            "journal_mode=OFF",
            "synchronous=OFF",
            "cache_size=-1000000",
            "temp_store=MEMORY",
            "foreign_keys=OFF",
        ):
            self.conn.execute(f"PRAGMA {pragma}")
        self.sql = {
            table: f"INSERT INTO {table} ({', '.join(_q(c) for c in cols)}) "
            f"VALUES ({', '.join('?' * len(cols))})"
            for table, cols in COLUMNS.items()
        }

    def write(self, tables: Tables) -> None:
        self.conn.execute("BEGIN")
        for table in TABLE_ORDER:
            self.conn.executemany(self.sql[table], tables.rows.get(table, ()))
        self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.close()


class PostgresWriter:
    """``COPY`` per table, one transaction per chunk."""

    def __init__(self, url: str):
        import psycopg

        self.conn = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1))
        self.conn.execute("SET synchronous_commit = off")
        self.conn.commit()

    def write(self, tables: Tables) -> None:
        with self.conn.transaction(), self.conn.cursor() as cur:
            for table in TABLE_ORDER:
                columns = ", ".join(_q(c) for c in COLUMNS[table])
                with cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                    for row in tables.rows.get(table, ()):
                        copy.write_row(row)

    def close(self) -> None:
        self.conn.close()


def _q(column: str) -> str:
    return f'"{column}"'


# -- the load ----------------------------------------------------------------------------


def load_ledger(
    engine: Engine,
    data: dict[str, Any],
    payments: int,
    seed: int = 22,
    say: Callable[[str], None] = lambda _text: None,
) -> LoadResult:
    """Fill a migrated, empty ledger with ``payments`` payments and every row they leave."""
    if not 1 <= payments <= MAX_PAYMENTS:
        raise ValueError(f"payments={payments}: expected 1..{MAX_PAYMENTS}")
    with engine.connect() as conn:
        if conn.execute(select(func.count()).select_from(Payment.__table__)).scalar_one():
            raise ValueError("the ledger already holds payments: load into an empty one")
    started = time.perf_counter()
    postgres = engine.dialect.name == "postgresql"
    ref = prepare_reference(engine, data, seed, payments)
    gen = Generator(ref, seed, payments, postgres, chain_heads(engine))
    engine.dispose()  # SQLite: the writer changes the journal, which needs the file alone
    writer: SqliteWriter | PostgresWriter = (
        PostgresWriter(engine.url.render_as_string(hide_password=False))
        if postgres
        else SqliteWriter(str(engine.url.database))
    )
    rows = 0
    try:
        for start in range(0, payments, CHUNK_PAYMENTS):
            tables = Tables()
            for index in range(start, min(start + CHUNK_PAYMENTS, payments)):
                gen.payment(tables, index)
            writer.write(tables)
            rows += tables.count()
            say(
                f"{min(start + CHUNK_PAYMENTS, payments):,} payments, {rows:,} rows, "
                f"{time.perf_counter() - started:.0f} s"
            )
    finally:
        writer.close()
    _finish(engine, gen)
    return LoadResult(payments, rows, time.perf_counter() - started)


def _finish(engine: Engine, gen: Generator) -> None:
    """Balances, positions and chain heads as the entries written say; PostgreSQL's statistics.

    SQLite gets none: the switch never runs ``ANALYZE`` on it, so neither does the load.
    """
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE accounts SET balance_minor = balance_minor + :d WHERE number = :n"),
            [{"d": d, "n": n} for n, d in gen.balances.items() if d],
        )
        settlement = {
            bank: gen.balances.get(internal_account(bank, AccountKind.SETTLEMENT, CURRENCY), 0)
            for bank in gen.ref.banks
        }
        _move_positions(conn, settlement, gen.holds_minor)
        known = chain_ids(conn)
        for chain, (seq, head) in gen.heads.items():
            sql = (
                "UPDATE ledger_chain_head SET seq = :s, head_hash = :h WHERE chain_id = :c"
                if chain in known
                else "INSERT INTO ledger_chain_head (chain_id, seq, head_hash) VALUES (:c, :s, :h)"
            )
            conn.execute(text(sql), {"c": chain, "s": seq, "h": head})
    if engine.dialect.name == "postgresql":  # what autovacuum would do soon after a load
        with engine.connect() as conn:
            conn.execute(text("ANALYZE"))
            conn.commit()


def _move_positions(conn: Any, posted: dict[str, int], holds: dict[str, int]) -> None:
    """Each bank's position row moved as settlement moves it, journaled in write order.

    The payments were written, not decided, so nothing bounded them: the ledger's caps
    are lifted first (journaled as a load's), and the auditor's walk finds no cap to check.
    """
    conn.execute(text("DELETE FROM bank_limits"))
    now = datetime.now(UTC)
    for bank in sorted(posted):
        journal_limits(conn, bank, CURRENCY, None, LOAD_SOURCE)
    rows = read_banks(conn)
    move_positions(conn, [
        PositionMoved(bank, CURRENCY, posted[bank], holds.get(bank, 0), 0, None, 0, None, now,
                      read_version=rows[(bank, CURRENCY)].version)
        for bank in sorted(posted)
    ])  # fmt: skip


def chain_ids(conn: Any) -> set[int]:
    return {int(r[0]) for r in conn.execute(select(LedgerChainHead.__table__.c.chain_id))}


def ensure_ledger(
    url: str,
    data: dict[str, Any],
    payments: int,
    seed: int,
    say: Callable[[str], None] = lambda _text: None,
) -> LoadResult | None:
    """Migrate the ledger at ``url`` and load it if empty; a full one is kept as it is.

    Returns the load's figures, or None when the ledger already held ``payments``
    payments (a ledger holding another number is refused: load it again on purpose).
    """
    from engine.ledger.database import make_engine, upgrade

    upgrade(url)
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            held = conn.execute(select(func.count()).select_from(Payment.__table__)).scalar_one()
        if held == payments:
            say(f"ledger already holds {held:,} payments: reused")
            return None
        if held:
            raise ValueError(f"the ledger holds {held:,} payments, not {payments:,}: reload it")
        return load_ledger(engine, data, payments, seed, say)
    finally:
        engine.dispose()
