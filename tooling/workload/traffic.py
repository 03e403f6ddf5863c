"""Multichannel bank traffic: a Moroccan day of payments, good and bad, deterministic for a seed.

The mix (share of messages): e-commerce 22% (airlines among the largest merchants),
the vehicle-tax vignette 10%, other e-government 4%, ATM withdrawals 15% (a third
at another bank's ATM), card payments at POS 20%, mobile transfers 12%, transfers
between banks by web or branch 10% (seven in ten are employers paying salaries,
which keeps customers funded: the mix holds for about a million messages),
and 7% of the bad cases a real day brings: unknown accounts, insufficient funds, a
bank retrying with the same reference, closed accounts, amounts over the channel
limit, malformed messages, and forgeries (a payment signed by another bank than the
payer's, a payment signed by none).

Every message is signed as a bank would sign it (``producers.signing``): the simulator
holds one reproducible key per bank of the reference file (``simulated_signers``) and
registers their public halves in the ledger it publishes for. A payment and a
malformed message are signed by the payer's bank, so poison stays poison (dead-lettered
as undecodable, not refused as a forgery); a forgery is refused as a security matter.
The keys derive from the seed: whoever knows it can sign as any bank, so simulated
traffic belongs on a test ledger, never on one real banks use.

Every message says what Sakk should do with it (``expected_outcome``,
``expected_reason``), and the labels are true by construction: the simulator keeps
a shadow of every payer's funds, so a good payment never overdraws its payer and
an ``insufficient_funds`` one always does. A payer's own debits reach settlement
in order (one key, one partition), but a credit from another payer sits on another
partition and may be settled after the payee's next debit: a consumer drains its
partitions unevenly, a fetch at a time. So credits become spendable only later:
``CREDIT_DELAY_MESSAGES`` messages later when not live (deterministic), and
``LIVE_CREDIT_DELAY_S`` seconds later when live (uneven draining is bounded in
time, not in messages). A live run published much faster than that therefore
spends opening balances only: with the committed reference about 8,000 messages
keep the mix; after that, the kinds nobody can afford give way to others, and
to ``insufficient_funds`` payments (still labelled truly).

The shadow starts from the reference file's opening balances: run against a
ledger that earlier runs already moved, some good payments may fail for funds.
:class:`LiveSimulation` publishes in phases (one offered rate after another) from one
simulator, so the shadow carries over from phase to phase and stays true.

With ``lifecycle=True`` (the demo, ``sakk simulate``) the traffic also carries the
lifecycle of payments (``LIFECYCLE_MIX``): card authorizations at POS and online (intent
``AUTHORIZATION``) captured in full, in part, in two parcels or voided, a few left to
expire (their hold's life, from the channel's ``hold_expiry_s`` in the reference data,
ends seconds after they are published), airline purchases refunded in whole or in part
by the airline's bank, and interbank transfers returned by the payee's bank with an ISO
20022 return reason; and two steps that must be refused (a capture above the hold, a
refund asked by the payer's bank). A payment and its steps are one draw: the steps follow
the payment at once (keyed by its payer account, so ordered behind it on its partition),
each signed by its sender bank, and ``generate(n)`` never cuts a draw in two, so every
payment reaches the state it expects within the call that began it. The funds shadow
follows the steps: a hold needs its amount and fee, a capture posts what it captures, a
void gives the hold back at once (it is ordered before the payer's next payment), an
expiry gives it back only once it has surely been applied, and a refund or a return
debits the payee at once and credits the payer later.

Two profiles (``MIXES``): ``uniform`` is the mix above. ``skew`` is the hot-account
test (Mojaloop's skew test): 70% of messages are purchases by ``HOT_PAYER_BANK``'s
customers from the one ``HOT_MERCHANT`` account, and the other 30% keep the mix, except
that every e-government payment is a vignette, paid to the vignette's one government
account, which so becomes a second hot account.
"""

from __future__ import annotations

import hashlib
import heapq
import random
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from engine.config import Settings
from engine.domain import StepKind
from engine.events import PAYMENT_INITIATED
from engine.ids import switch_id_of
from engine.ledger.database import make_engine
from engine.ledger.models import AccountKind, AccountStatus
from engine.ledger.reference import internal_account, read_file
from engine.money import apply_rate_bps
from engine.serialization import HEADER_BYTES, AvroCodec
from producers.exceptions import PublisherError
from producers.publisher import PaymentPublisher, utc_now_ms
from producers.signing import (
    SIMULATED_KEYS_VALID_FROM,
    Signers,
    register_signers,
)
from tooling.reference_data import CITIES, make_rib
from tooling.workload.core import workload_signers
from tooling.workload.profiles import (
    HOT_CHANNELS,
    HOT_MERCHANT,
    HOT_MERCHANT_MAD,
    HOT_PAYER_BANK,
    MIX,
    MIXES,
    SKEW,
    SKEW_MIX,
    UNIFORM,
    lifecycle_mix,
)

CURRENCY = "MAD"
MAD = 100  # minor units per dirham
VIGNETTE = "VIGNETTE"
TAX_SERVICE = "IMPOTS"
EGOV_MCC = "9311"  # ISO 18245: tax payments to government agencies

MAX_SEED = 10**9
MAX_MESSAGES = 10**8 - 1  # bank references carry the message index in 8 digits
MAX_REFERENCE_CHARS = 35
MAX_RUN_TAG_CHARS = 8
MAX_PAYER_DRAWS = 32  # random payers tried before scanning for the richest one
MAX_KIND_DRAWS = 16  # kinds tried before falling back to an insufficient_funds message
MAX_RETRY_CANDIDATES = 1_000  # recent good payments a duplicate_retry may copy
CREDIT_DELAY_MESSAGES = 1_000
LIVE_CREDIT_DELAY_S = 60.0
MAX_RAW_BYTES = 120
TIME_STEP_MS = (1, 9)  # occurred_at advances this many ms per message (non-live)
MAX_RATE_PER_S = 1_000_000
MAX_PAYMENTS = MAX_MESSAGES
PROGRESS_EVERY = 100

# --- the lifecycle (``lifecycle=True``) ------------------------------------------------

AUTHORIZATION = "AUTHORIZATION"
AUTH_CHANNELS = (("POS", 60), ("WEB", 40))
PARTIAL_CAPTURE_PERCENT = (40, 95)
SPLIT_CAPTURE_PERCENT = (30, 70)
PARTIAL_REFUND_PERCENT = (20, 80)
OVER_CAPTURE_MAD = (1, 50)
EXPIRY_LEAD_S = 6  # an expiring hold is published this long before its life ends
PUBLISH_MARGIN_S = 3  # at most this long from a message's generation to the broker's time
RETURN_REASONS = (("AC04", 50), ("AC01", 20), ("AC06", 15), ("MD07", 15))
STEP_KINDS: Mapping[str, tuple[str, tuple[str, str | None]]] = {
    # message kind: (step, (expected outcome, reason))
    "capture": (StepKind.CAPTURE, ("applied", None)),
    "void": (StepKind.VOID, ("applied", None)),
    "refund": (StepKind.REFUND, ("applied", None)),
    "return": (StepKind.RETURN, ("applied", None)),
    "capture_above_hold": (StepKind.CAPTURE, ("refused", "AM09")),
    "refund_by_payer_bank": (StepKind.REFUND, ("refused", "AG01")),
}
LIFECYCLE_EXPECTED: Mapping[str, tuple[str, str | None]] = {
    "card_capture": ("captured", None),
    "card_partial_capture": ("captured", None),
    "card_split_capture": ("captured", None),
    "card_over_capture": ("captured", None),
    "card_void": ("voided", None),
    "card_expiry": ("expired", None),
    "airline_refund": ("refunded", None),
    "airline_partial_refund": ("settled", None),
    "misdirected_refund": ("settled", None),
    "transfer_return": ("returned", None),
    **{kind: expected for kind, (_, expected) in STEP_KINDS.items()},
}
EXPIRED_BY_SWITCH = "EXPIRE applied"  # what each card_expiry adds to the expected steps
DEFAULT_HOLD_EXPIRY_S: int = Settings.hold_expiry_s  # the settings' defaults
DEFAULT_MAX_EVENT_AGE_S: int = Settings.max_event_age_s


SECURITY_KINDS = frozenset({"forged_payer_bank", "unsigned_payment"})  # refused, unread
BAD_KINDS = frozenset({"unknown_account", "insufficient_funds", "duplicate_retry",
                       "closed_account", "over_limit", "malformed"}) | SECURITY_KINDS  # fmt: skip
GOOD_KINDS = (frozenset(MIX) | frozenset(SKEW_MIX)) - BAD_KINDS

# What Sakk must do with each kind: (outcome, ISO 20022 reason).
EXPECTED: Mapping[str, tuple[str, str | None]] = {
    **{kind: ("settled", None) for kind in GOOD_KINDS},
    "unknown_account": ("rejected", "AC01"),
    "insufficient_funds": ("failed", "AM04"),
    "duplicate_retry": ("rejected", "AM05"),
    "closed_account": ("rejected", "AC04"),
    "over_limit": ("rejected", "AM02"),
    "malformed": ("dead_lettered", None),
    **{kind: ("dead_lettered", "security") for kind in SECURITY_KINDS},  # the dead-letter kind
    **LIFECYCLE_EXPECTED,  # a payment's state once its steps are applied; a step's outcome
}

# (merchant holder, weight, low MAD, high MAD) per merchant group.
AIRLINES = (("Royal Air Maroc", 60, 600, 9_000), ("Air Arabia Maroc", 40, 450, 5_000))
ONLINE_SHOPS = (
    ("Jumia Maroc", 50, 50, 4_000),
    ("Maroc Telecom", 25, 20, 1_000),
    ("Marjane Holding", 15, 100, 2_500),
    ("Riad Zitoun, Marrakech", 10, 600, 8_000),
)
CARD_SHOPS = (
    ("Marjane Holding", 45, 30, 2_500),
    ("Afriquia SMDC", 35, 100, 800),
    ("Maroc Telecom", 12, 20, 500),
    ("Riad Zitoun, Marrakech", 8, 500, 5_000),
)
VIGNETTE_TARIFFS_MAD = ((700, 45), (1_500, 30), (3_000, 18), (6_000, 7))
ATM_AMOUNTS_MAD = ((100, 8), (200, 18), (300, 8), (400, 8), (500, 20), (600, 5), (700, 3),
                   (800, 4), (1_000, 16), (1_500, 5), (2_000, 5))  # fmt: skip
TAX_SERVICES = ("IMPOT_SUR_LE_REVENU", "TAXE_HABITATION", "TAXE_SERVICES_COMMUNAUX",
                "TAXE_PROFESSIONNELLE")  # fmt: skip
ATM_AT_OTHER_BANK_PERCENT = 35
SALARY_PERCENT = 70  # of web and branch transfers: an employer (merchant) pays a customer
SALARY_MAD = (5_000, 30_000)
INSUFFICIENT_MARGIN_MAD = (100_000, 300_000)  # above everything the payer could have


@dataclass(frozen=True, slots=True)
class _Account:
    number: str
    bank: str
    kind: str
    status: str
    holder: str
    overdraft_minor: int


@dataclass(frozen=True)
class SimulatedMessage:
    """One message for ``payments.initiated``: a payment record, a step of one (a
    PaymentStepRequested record), or raw bytes (malformed)."""

    kind: str
    payment: dict[str, Any] | None = None
    raw: bytes | None = None
    key: bytes | None = None  # the Kafka key of a raw message (payments are keyed by payer)
    signer: str | None = None  # the bank whose key signs it; None: it goes unsigned
    step: dict[str, Any] | None = None

    @property
    def expected_outcome(self) -> str:
        """A payment's: settled, rejected, failed or dead_lettered, or the state its steps
        leave it in (captured, voided, expired, refunded, returned); a step's: applied or
        refused."""
        return EXPECTED[self.kind][0]

    @property
    def expected_reason(self) -> str | None:
        return EXPECTED[self.kind][1]

    @property
    def channel(self) -> str | None:
        return None if self.payment is None else str(self.payment["channel"])


class _Funds:
    """Shadow of what each payer may spend, from opening balances and the simulated flow."""

    def __init__(self, accounts: Sequence[tuple[_Account, int]]) -> None:
        self.balance = {a.number: opening for a, opening in accounts}
        self.overdraft = {a.number: a.overdraft_minor for a, _ in accounts}
        self.unreleased: Counter[str] = Counter()
        # A heap of (message index or monotonic time from which it is spendable, account,
        # amount): credits come due in order, but a released hold may come due later.
        self._credits: list[tuple[float, str, int]] = []

    def release(self, now: float) -> None:
        while self._credits and self._credits[0][0] <= now:
            _, number, amount = heapq.heappop(self._credits)
            self.unreleased[number] -= amount

    def spendable(self, number: str) -> int:
        return self.balance[number] - self.unreleased[number] + self.overdraft[number]

    def ceiling(self, number: str) -> int:
        """Most the account could hold by now, counting every credit sent so far."""
        return self.balance[number] + self.overdraft[number]

    def move(self, payer: str, payee: str, amount: int, fee: int, spendable_from: float) -> None:
        self.balance[payer] -= amount + fee
        if payee in self.balance:  # government and bank cash accounts are not payers
            self._credit(payee, amount, spendable_from)

    def hold(self, number: str, amount: int, released_from: float | None) -> None:
        """Reserve ``amount`` of ``number``; spendable again from ``released_from`` (None:
        never, as far as this shadow knows)."""
        self.balance[number] -= amount
        if released_from is not None:
            self._credit(number, amount, released_from)

    def _credit(self, number: str, amount: int, spendable_from: float) -> None:
        self.balance[number] += amount
        self.unreleased[number] += amount
        heapq.heappush(self._credits, (spendable_from, number, amount))


class TrafficSimulator:
    """Generates simulated messages; the same reference, seed and start give the same messages.

    ``live=True`` stamps each payment with the time it is generated (for publishing
    now: the validator refuses event times in the future or too old). ``run_tag``
    makes ids and bank references differ between runs of the same seed, so a second
    run against the same ledger is not one long series of duplicates. ``codec`` lets
    malformed messages include truncated encodings, not only random bytes. ``profile``
    names the mix (``MIXES``): ``uniform``, or ``skew`` for the hot-account test.
    ``lifecycle`` adds the lifecycle traffic (``LIFECYCLE_MIX``); ``hold_expiry_s`` is the
    hold life of a channel the reference data gives none, and ``max_event_age_s`` the
    oldest event time the switch accepts (both ``Settings``' own): an expiring hold is
    only drawn on a channel whose back-dated authorization the validator still accepts.
    """

    def __init__(
        self,
        reference: Mapping[str, Any],
        seed: int,
        start: datetime,
        codec: AvroCodec | None = None,
        live: bool = False,
        run_tag: str | None = None,
        profile: str = UNIFORM,
        lifecycle: bool = False,
        hold_expiry_s: int = DEFAULT_HOLD_EXPIRY_S,
        max_event_age_s: int = DEFAULT_MAX_EVENT_AGE_S,
    ) -> None:
        if not 0 <= seed < MAX_SEED:
            raise ValueError(f"seed={seed} must be in [0, {MAX_SEED})")
        if profile not in MIXES:
            raise ValueError(f"profile={profile!r}: expected one of {sorted(MIXES)}")
        if start.utcoffset() is None:
            raise ValueError("start must be a timezone-aware datetime")
        if run_tag is not None and not (
            0 < len(run_tag) <= MAX_RUN_TAG_CHARS and run_tag.isalnum()
        ):
            raise ValueError(f"run_tag must be 1 to {MAX_RUN_TAG_CHARS} letters or digits")
        self.seed = seed
        self.live = live
        self.profile = profile
        self.lifecycle = lifecycle
        self._default_hold_s = hold_expiry_s
        self._max_event_age_s = max_event_age_s
        self._queued: deque[_QueuedStep] = deque()  # the steps of the last draw, to send next
        self._room = 1  # messages left in the current generate call, this one included
        self._rng = random.Random(seed)
        self._codec = codec
        self._clock = start.astimezone(UTC).replace(microsecond=start.microsecond // 1000 * 1000)
        self._ref_prefix = f"{run_tag}-{seed}" if run_tag else str(seed)
        self._id_salt = 0 if run_tag is None else int.from_bytes(
            hashlib.sha256(run_tag.encode()).digest()[:16], "big")  # fmt: skip
        self._index = 0
        self._recent_good: deque[dict[str, Any]] = deque(maxlen=MAX_RETRY_CANDIDATES)
        self._load(reference)

    # --- reference data -------------------------------------------------------------

    def _load(self, reference: Mapping[str, Any]) -> None:
        accounts = [
            (_Account(a["number"], a["bank"], a["kind"], a.get("status", AccountStatus.ACTIVE),
                      a.get("holder", a["number"]), a.get("overdraft_limit_minor") or 0),
             a.get("opening_balance_minor") or 0)
            for a in reference.get("accounts", []) if a.get("currency", CURRENCY) == CURRENCY
        ]  # fmt: skip
        active = [a for a, _ in accounts if a.status == AccountStatus.ACTIVE]
        self._customers = [a for a in active if a.kind == AccountKind.CUSTOMER]
        self._hot_payers = [a for a in self._customers if a.bank == HOT_PAYER_BANK]
        self._closed = [a for a, _ in accounts if a.status == AccountStatus.CLOSED]
        self._merchants = {a.holder: a for a in active if a.kind == AccountKind.MERCHANT}
        self._employers = sorted(self._merchants.values(), key=lambda a: a.number)
        government = {
            r.get("egov_service"): r["number"] for r in reference.get("accounts", [])
            if r["kind"] == AccountKind.GOVERNMENT and r.get("status", "ACTIVE") == "ACTIVE"
        }  # fmt: skip
        by_number = {a.number: a for a in active}
        self._government = {svc: by_number[n] for svc, n in government.items() if n in by_number}
        self._known_numbers = {a.number for a, _ in accounts}
        self._retail_banks = sorted({a.bank for a in self._customers})
        self._limits = {
            lim["channel"]: lim["max_amount_minor"] for lim in reference.get("channel_limits", [])
            if lim.get("currency") == CURRENCY
        }  # fmt: skip
        self._hold_life_s = {
            lim["channel"]: lim["hold_expiry_s"] for lim in reference.get("channel_limits", [])
            if lim.get("currency") == CURRENCY and lim.get("hold_expiry_s") is not None
        }  # fmt: skip
        self._fees = {
            (f["channel"], f["payment_type"]): (f.get("fixed_minor") or 0, f.get("rate_bps") or 0,
                                                f.get("max_minor"))
            for f in reference.get("fee_schedule", []) if f.get("currency") == CURRENCY
        }  # fmt: skip
        self._funds = _Funds([(a, o) for a, o in accounts if a.status == AccountStatus.ACTIVE])
        self._check_reference()

    def _check_reference(self) -> None:
        if len(self._customers) < 2 or len(self._retail_banks) < 2:
            raise ValueError("the reference needs active customers at two banks at least")
        needed = {h for group in (AIRLINES, ONLINE_SHOPS, CARD_SHOPS) for h, *_ in group}
        missing = sorted(needed - set(self._merchants))
        if missing:
            raise ValueError(f"the reference lacks active merchant accounts: {missing}")
        for service in (VIGNETTE, TAX_SERVICE):
            if service not in self._government:
                raise ValueError(f"the reference lacks a government account for {service}")
        if self.profile == SKEW and not self._hot_payers:
            raise ValueError(
                f"the skew profile needs active customers at bank {HOT_PAYER_BANK} (the hot payers)"
            )

    # --- the stream -----------------------------------------------------------------

    def generate(self, n: int) -> Iterator[SimulatedMessage]:
        """The next ``n`` messages; successive calls continue the same stream."""
        if not 0 <= n <= MAX_MESSAGES - self._index:
            raise ValueError(f"n={n}: at most {MAX_MESSAGES} messages per simulator")
        mix = lifecycle_mix(MIXES[self.profile]) if self.lifecycle else MIXES[self.profile]
        kinds, weights = list(mix), list(mix.values())
        for left in range(n, 0, -1):
            self._index += 1
            self._funds.release(time.monotonic() if self.live else self._index)
            self._advance_clock()
            self._room = left
            if self._queued:
                yield self._step_message(self._queued.popleft())
            else:
                yield self._next_message(kinds, weights)

    def _next_message(self, kinds: list[str], weights: list[int]) -> SimulatedMessage:
        for _ in range(MAX_KIND_DRAWS):
            kind = self._rng.choices(kinds, weights)[0]
            message = BUILDERS[kind](self)
            if message is not None:
                return message
        # Nobody can afford anything drawn: the population ran dry. Say so honestly.
        return self._insufficient_funds()

    def _advance_clock(self) -> None:
        self._clock += timedelta(milliseconds=self._rng.randint(*TIME_STEP_MS))

    def _occurred_at(self) -> datetime:
        return utc_now_ms() if self.live else self._clock

    def _new_id(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128) ^ self._id_salt, version=4))

    # --- building blocks --------------------------------------------------------------

    def _payment(
        self, payer: _Account, payee_bank: str, payee_account: str, amount: int, channel: str,
        payment_type: str, mcc: str | None = None, egov_service: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        return {
            "event_id": self._new_id(),
            "payment_id": self._new_id(),
            "bank_reference": self._bank_reference(payer.bank),
            "occurred_at": self._occurred_at(),
            "payer_bank": payer.bank,
            "payer_account": payer.number,
            "payee_bank": payee_bank,
            "payee_account": payee_account,
            "amount_minor": amount,
            "currency": CURRENCY,
            "channel": channel,
            "payment_type": payment_type,
            "merchant_category_code": mcc,
            "egov_service": egov_service,
            "intent": "SALE",
            "remittance_info": None,
        }

    def _bank_reference(self, bank: str) -> str:
        """The sending bank's reference of this message: unique, as the index is."""
        reference = f"{bank}-{self._ref_prefix}-{self._index:08d}"
        if len(reference) > MAX_REFERENCE_CHARS:
            raise ValueError(f"bank reference {reference!r} is over {MAX_REFERENCE_CHARS} chars")
        return reference

    def _fee(self, channel: str, payment_type: str, amount: int, egov_service: str | None) -> int:
        """What settlement will charge (mirrors consumers.fees; the vignette is free)."""
        rule = self._fees.get((channel, payment_type))
        if egov_service == VIGNETTE or rule is None:
            return 0
        fixed, bps, cap = rule
        fee = fixed + apply_rate_bps(amount, bps)
        return fee if cap is None else min(fee, cap)

    def _good(
        self, kind: str, payer: _Account, payee: _Account, amount: int, channel: str,
        payment_type: str, mcc: str | None = None, egov_service: str | None = None,
    ) -> SimulatedMessage:  # fmt: skip
        payment = self._payment(
            payer, payee.bank, payee.number, amount, channel, payment_type, mcc, egov_service
        )
        fee = self._fee(channel, payment_type, amount, egov_service)
        self._funds.move(payer.number, payee.number, amount, fee, self._credit_time())
        self._recent_good.append(payment)
        return _signed(kind, payment)

    def _credit_time(self, after_s: float = 0.0) -> float:
        """From when a credit sent now is surely applied (``after_s`` seconds from now)."""
        if self.live:
            return time.monotonic() + after_s + LIVE_CREDIT_DELAY_S
        return self._index + CREDIT_DELAY_MESSAGES

    def _affordable_payer(
        self, pool: Sequence[_Account], amount: int, channel: str, payment_type: str,
        egov_service: str | None = None, exclude: str | None = None,
    ) -> _Account | None:  # fmt: skip
        """A payer from ``pool`` who can pay ``amount`` and its fee now, or None."""
        need = amount + self._fee(channel, payment_type, amount, egov_service)
        return self._payer_for(pool, need, exclude)

    def _payer_for(
        self, pool: Sequence[_Account], need: int, exclude: str | None = None
    ) -> _Account | None:
        """A payer from ``pool`` who can spend ``need`` now, or None."""
        for _ in range(MAX_PAYER_DRAWS):
            candidate = self._rng.choice(pool)
            if candidate.number != exclude and self._funds.spendable(candidate.number) >= need:
                return candidate
        richest = max((a for a in pool if a.number != exclude),
                      key=lambda a: self._funds.spendable(a.number), default=None)  # fmt: skip
        if richest is None or self._funds.spendable(richest.number) < need:
            return None
        return richest

    def _other_customer(self, payer: _Account, other_bank: bool) -> _Account:
        for _ in range(MAX_PAYER_DRAWS):
            payee = self._rng.choice(self._customers)
            if payee.number != payer.number and (not other_bank or payee.bank != payer.bank):
                return payee
        return next(
            c for c in self._customers
            if c.number != payer.number and (not other_bank or c.bank != payer.bank)
        )  # fmt: skip

    def _amount_mad(self, low: int, high: int, centimes: bool = False) -> int:
        """Skewed to small amounts (the lower of two draws), in minor units."""
        mad = min(self._rng.randint(low, high), self._rng.randint(low, high))
        return mad * MAD + (self._rng.randrange(MAD) if centimes and mad < high else 0)

    def _weighted(self, items: Sequence[tuple[Any, ...]]) -> tuple[Any, ...]:
        return self._rng.choices(items, [item[1] for item in items])[0]

    # --- good traffic ---------------------------------------------------------------

    def _purchase(self, kind: str, shops: Sequence[tuple[str, int, int, int]],
                  channels: Sequence[tuple[str, int]]) -> SimulatedMessage | None:  # fmt: skip
        holder, _, low, high = self._weighted(shops)
        merchant = self._merchants[holder]
        channel = self._weighted(channels)[0]
        amount = self._amount_mad(low, high, centimes=kind == "pos_card")
        payer = self._affordable_payer(self._customers, amount, channel, "PURCHASE")
        if payer is None:
            return None
        mcc = self._mcc(merchant)
        return self._good(kind, payer, merchant, amount, channel, "PURCHASE", mcc=mcc)

    def _mcc(self, merchant: _Account) -> str:
        return MERCHANT_MCC.get(merchant.holder, "5999")

    def _ecommerce_airline(self) -> SimulatedMessage | None:
        return self._purchase("ecommerce_airline", AIRLINES, (("WEB", 75), ("MOBILE", 25)))

    def _ecommerce(self) -> SimulatedMessage | None:
        return self._purchase("ecommerce", ONLINE_SHOPS, (("WEB", 70), ("MOBILE", 30)))

    def _pos_card(self) -> SimulatedMessage | None:
        return self._purchase("pos_card", CARD_SHOPS, (("POS", 1),))

    def _hot_merchant(self) -> SimulatedMessage | None:
        """The skew profile's hot flow: a HOT_PAYER_BANK customer buys from HOT_MERCHANT."""
        merchant = self._merchants[HOT_MERCHANT]
        channel = self._weighted(HOT_CHANNELS)[0]
        amount = self._amount_mad(*HOT_MERCHANT_MAD, centimes=True)
        payer = self._affordable_payer(self._hot_payers, amount, channel, "PURCHASE")
        if payer is None:
            return None
        mcc = self._mcc(merchant)
        return self._good("hot_merchant", payer, merchant, amount, channel, "PURCHASE", mcc=mcc)

    def _vignette(self) -> SimulatedMessage | None:
        amount = self._weighted(VIGNETTE_TARIFFS_MAD)[0] * MAD
        channel = self._weighted((("EGOV", 50), ("WEB", 30), ("MOBILE", 20)))[0]
        payer = self._affordable_payer(self._customers, amount, channel, "EGOV", VIGNETTE)
        if payer is None:
            return None
        return self._good(
            "vignette",
            payer,
            self._government[VIGNETTE],
            amount,
            channel,
            "EGOV",
            mcc=EGOV_MCC,
            egov_service=VIGNETTE,
        )

    def _egov_tax(self) -> SimulatedMessage | None:
        amount = self._amount_mad(100, 6_000, centimes=True)
        channel = self._weighted((("EGOV", 70), ("WEB", 30)))[0]
        service = self._rng.choice(TAX_SERVICES)
        payer = self._affordable_payer(self._customers, amount, channel, "EGOV", service)
        if payer is None:
            return None
        return self._good(
            "egov_tax",
            payer,
            self._government[TAX_SERVICE],
            amount,
            channel,
            "EGOV",
            mcc=EGOV_MCC,
            egov_service=service,
        )

    def _atm_withdrawal(self) -> SimulatedMessage | None:
        amount = self._weighted(ATM_AMOUNTS_MAD)[0] * MAD
        payer = self._affordable_payer(self._customers, amount, "ATM", "CASH_WITHDRAWAL")
        if payer is None:
            return None
        atm_bank = payer.bank
        if self._rng.randrange(100) < ATM_AT_OTHER_BANK_PERCENT:
            atm_bank = self._rng.choice([b for b in self._retail_banks if b != payer.bank])
        cash = _Account(
            internal_account(atm_bank, AccountKind.CASH, CURRENCY),
            atm_bank,
            AccountKind.CASH,
            AccountStatus.ACTIVE,
            f"{atm_bank} ATM cash",
            0,
        )
        return self._good("atm_withdrawal", payer, cash, amount, "ATM", "CASH_WITHDRAWAL")

    def _mobile_transfer(self) -> SimulatedMessage | None:
        amount = self._amount_mad(50, 5_000)
        payer = self._affordable_payer(self._customers, amount, "MOBILE", "TRANSFER")
        if payer is None:
            return None
        payee = self._other_customer(payer, other_bank=self._rng.randrange(100) < 60)
        return self._good("mobile_transfer", payer, payee, amount, "MOBILE", "TRANSFER")

    def _transfer(self, kind: str, channel: str, customer_mad: tuple[int, int],
                  other_bank: bool) -> SimulatedMessage | None:  # fmt: skip
        salary = self._rng.randrange(100) < SALARY_PERCENT
        amount = self._amount_mad(*(SALARY_MAD if salary else customer_mad))
        pool = self._employers if salary else self._customers
        payer = self._affordable_payer(pool, amount, channel, "TRANSFER")
        if payer is None:
            return None
        payee = self._other_customer(payer, other_bank)
        return self._good(kind, payer, payee, amount, channel, "TRANSFER")

    def _interbank_transfer(self) -> SimulatedMessage | None:
        return self._transfer("interbank_transfer", "WEB", (200, 20_000), other_bank=True)

    def _branch_transfer(self) -> SimulatedMessage | None:
        return self._transfer(
            "branch_transfer", "BRANCH", (500, 40_000), other_bank=self._rng.randrange(100) < 50
        )

    # --- the lifecycle: a payment and the steps that follow it, one draw ---------------

    def _queue(self, kind: str, payment: dict[str, Any], sender: str, amount: int | None = None,
               final: bool = False, reason: str | None = None) -> None:  # fmt: skip
        self._queued.append(_QueuedStep(kind, payment, sender, amount, final, reason))

    def _step_message(self, q: _QueuedStep) -> SimulatedMessage:
        """A queued step as its sender bank publishes it (signed by that bank)."""
        p = q.payment
        step = {
            "event_id": self._new_id(),
            # The payer's bank names its payment by its own id, the payee's bank by the
            # switch's id it was told (engine.ids).
            "payment_id": p["payment_id"] if q.sender == p["payer_bank"] else switch_id_of(p),
            "bank_reference": self._bank_reference(q.sender),
            "occurred_at": self._occurred_at(),
            "sender_bank": q.sender,
            "payer_account": p["payer_account"],
            "step": STEP_KINDS[q.kind][0],
            "amount_minor": q.amount,
            "currency": None if q.amount is None else CURRENCY,
            "final": q.final,
            "reason_code": q.reason,
        }
        return SimulatedMessage(q.kind, step=step, signer=q.sender)

    def _card_authorization(self, kind: str) -> SimulatedMessage | None:
        """A card payment authorized, then captured (in full, in part, in two parcels, after
        a capture above the hold), voided, or left to expire."""
        steps = {"card_capture": 1, "card_partial_capture": 1, "card_split_capture": 2,
                 "card_void": 1, "card_over_capture": 2, "card_expiry": 0}[kind]  # fmt: skip
        if self._room < 1 + steps:
            return None
        # Fuel and hotel deposits are taken at a terminal; parcels ship for online orders.
        channel = {"card_partial_capture": "POS", "card_split_capture": "WEB"}.get(kind) \
            or self._weighted(AUTH_CHANNELS)[0]  # fmt: skip
        if kind == "card_expiry" and not self._expires_in_time(channel):
            return None
        holder, _, low, high = self._weighted(CARD_SHOPS if channel == "POS" else ONLINE_SHOPS)
        merchant = self._merchants[holder]
        amount = self._amount_mad(low, high, centimes=True)
        captures = self._capture_plan(kind, amount)
        fee = self._fee(channel, "PURCHASE", amount, None)
        captured = sum(captures)
        posted_fees = sum(self._fee(channel, "PURCHASE", c, None) for c in captures)
        payer = self._payer_for(self._customers, max(amount + fee, captured + posted_fees))
        if payer is None:
            return None
        payment = self._payment(payer, merchant.bank, merchant.number, amount, channel,
                                "PURCHASE", mcc=self._mcc(merchant))  # fmt: skip
        payment["intent"] = AUTHORIZATION
        if kind == "card_expiry":
            life = timedelta(seconds=self._hold_life_s.get(channel, self._default_hold_s))
            payment["occurred_at"] += timedelta(seconds=EXPIRY_LEAD_S) - life
            released = self._credit_time(EXPIRY_LEAD_S) if self.live else None
            self._funds.hold(payer.number, amount + fee, released)
        elif captures:
            self._funds.move(payer.number, merchant.number, captured, posted_fees,
                             self._credit_time())  # fmt: skip
        self._queue_captures(kind, payment, payer, merchant, captures)
        return _signed(kind, payment)

    def _capture_plan(self, kind: str, amount: int) -> list[int]:
        """The amounts the captures of ``kind`` will post (none for a void or an expiry)."""
        if kind in ("card_capture", "card_over_capture"):
            return [amount]
        if kind == "card_partial_capture":
            return [max(1, amount * self._rng.randint(*PARTIAL_CAPTURE_PERCENT) // 100)]
        if kind == "card_split_capture":
            first = max(1, amount * self._rng.randint(*SPLIT_CAPTURE_PERCENT) // 100)
            return [first, amount - first]
        return []

    def _queue_captures(
        self, kind: str, payment: dict[str, Any], payer: _Account, merchant: _Account,
        captures: list[int],
    ) -> None:  # fmt: skip
        """The steps of an authorization: the acquirer (the merchant's bank) captures; the
        payer's or the merchant's bank voids."""
        acquirer = merchant.bank
        if kind == "card_void":
            self._queue("void", payment, self._rng.choice((payer.bank, merchant.bank)))
        elif kind == "card_over_capture":
            above = payment["amount_minor"] + self._rng.randint(*OVER_CAPTURE_MAD) * MAD
            self._queue("capture_above_hold", payment, acquirer, above)
            self._queue("capture", payment, acquirer)
        elif kind == "card_partial_capture":
            self._queue("capture", payment, acquirer, captures[0], final=True)
        elif kind == "card_split_capture":
            self._queue("capture", payment, acquirer, captures[0])
            self._queue("capture", payment, acquirer)  # what remains: the hold is done
        elif kind == "card_capture":
            self._queue("capture", payment, acquirer)

    def _expires_in_time(self, channel: str) -> bool:
        """Whether a hold on ``channel`` back-dated to expire soon is still a fresh event."""
        life = self._hold_life_s.get(channel, self._default_hold_s)
        return life - EXPIRY_LEAD_S + PUBLISH_MARGIN_S <= self._max_event_age_s

    def _airline_refund(self, kind: str) -> SimulatedMessage | None:
        """A flight bought online, then refunded by the airline's bank, in whole or in part
        (or, misdirected, asked of the switch by the payer's bank: refused)."""
        if self._room < 2:
            return None
        holder, _, low, high = self._weighted(AIRLINES)
        merchant = self._merchants[holder]
        channel = self._weighted((("WEB", 75), ("MOBILE", 25)))[0]
        amount = self._amount_mad(low, high)
        misdirected = kind == "misdirected_refund"
        pool = [c for c in self._customers if c.bank != merchant.bank] if misdirected \
            else self._customers  # fmt: skip
        payer = self._affordable_payer(pool, amount, channel, "PURCHASE")
        if payer is None:
            return None
        refund = amount
        if kind == "airline_partial_refund":
            refund = amount * self._rng.randint(*PARTIAL_REFUND_PERCENT) // 100
        refund_fee = self._fee(channel, "REFUND", refund, None)
        if not misdirected and self._funds.spendable(merchant.number) < refund + refund_fee:
            return None
        message = self._good(kind, payer, merchant, amount, channel, "PURCHASE",
                             mcc=self._mcc(merchant))  # fmt: skip
        payment = message.payment
        assert payment is not None
        if misdirected:
            self._queue("refund_by_payer_bank", payment, payer.bank, refund)
            return message
        self._queue("refund", payment, merchant.bank, None if refund == amount else refund)
        self._funds.move(merchant.number, payer.number, refund, refund_fee, self._credit_time())
        return message

    def _transfer_return(self) -> SimulatedMessage | None:
        """An interbank web transfer the payee's bank returns, with a return reason. The
        credit itself pays for the return: it is posted first, on the payer's partition."""
        if self._room < 2:
            return None
        amount = self._amount_mad(200, 20_000)
        payer = self._affordable_payer(self._customers, amount, "WEB", "TRANSFER")
        if payer is None:
            return None
        payee = self._other_customer(payer, other_bank=True)
        message = self._good("transfer_return", payer, payee, amount, "WEB", "TRANSFER")
        assert message.payment is not None
        reason = self._weighted(RETURN_REASONS)[0]
        self._queue("return", message.payment, payee.bank, reason=reason)
        self._funds.move(payee.number, payer.number, amount, 0, self._credit_time())
        return message

    # --- bad traffic ----------------------------------------------------------------

    def _unknown_account(self) -> SimulatedMessage:
        payer = self._rng.choice(self._customers)
        bank = self._rng.choice(self._retail_banks)
        number = self._unknown_number(bank)
        amount = self._amount_mad(100, 2_000)
        channel = self._rng.choice(("WEB", "MOBILE"))
        if self._rng.randrange(100) < 70:  # a mistyped beneficiary
            payment = self._payment(payer, bank, number, amount, channel, "TRANSFER")
        else:  # a payer account the bank's system made up
            ghost = _Account(number, bank, AccountKind.CUSTOMER, AccountStatus.ACTIVE, "?", 0)
            payee = self._other_customer(ghost, other_bank=False)
            payment = self._payment(ghost, payee.bank, payee.number, amount, channel, "TRANSFER")
        return _signed("unknown_account", payment)

    def _unknown_number(self, bank: str) -> str:
        for _ in range(MAX_PAYER_DRAWS):
            city = self._rng.choice(CITIES)[0]
            number = make_rib(bank, city, f"{self._rng.randrange(10**16):016d}")
            if number not in self._known_numbers:
                return number
        raise RuntimeError(f"no unknown account number found in {MAX_PAYER_DRAWS} draws")

    def _insufficient_funds(self) -> SimulatedMessage:
        limit = self._limits.get("BRANCH", 0)
        low, high = (m * MAD for m in INSUFFICIENT_MARGIN_MAD)
        for _ in range(MAX_PAYER_DRAWS):
            payer = self._rng.choice(self._customers)
            amount = self._funds.ceiling(payer.number) + self._rng.randint(low, high)
            if 0 < amount <= limit:
                break
        else:
            payer = min(self._customers, key=lambda a: self._funds.ceiling(a.number))
            amount = max(1, self._funds.ceiling(payer.number)) + low
            if amount > limit:
                raise RuntimeError(
                    "every customer holds more than the BRANCH limit: "
                    "cannot build an insufficient-funds payment"
                )
        payee = self._other_customer(payer, other_bank=self._rng.randrange(100) < 50)
        payment = self._payment(payer, payee.bank, payee.number, amount, "BRANCH", "TRANSFER")
        return _signed("insufficient_funds", payment)

    def _duplicate_retry(self) -> SimulatedMessage | None:
        if not self._recent_good:
            return None
        original = self._rng.choice(self._recent_good)
        retry = dict(original, event_id=self._new_id(), payment_id=self._new_id(),
                     occurred_at=self._occurred_at())  # fmt: skip
        return _signed("duplicate_retry", retry)

    def _closed_account(self) -> SimulatedMessage | None:
        if not self._closed:
            return None
        closed = self._rng.choice(self._closed)
        amount = self._amount_mad(100, 3_000)
        channel = self._rng.choice(("WEB", "MOBILE"))
        if self._rng.randrange(100) < 50:  # paying from an account closed since
            payee = self._other_customer(closed, other_bank=False)
            payment = self._payment(closed, payee.bank, payee.number, amount, channel, "TRANSFER")
        else:  # paying an old beneficiary whose account was closed
            payer = self._other_customer(closed, other_bank=False)
            payment = self._payment(payer, closed.bank, closed.number, amount, channel, "TRANSFER")
        return _signed("closed_account", payment)

    def _over_limit(self) -> SimulatedMessage:
        payer = self._rng.choice(self._customers)
        case = self._rng.choice(("ATM", "MOBILE", "POS", "WEB"))
        limit = self._limits.get(case)
        if limit is None:
            raise ValueError(f"the reference has no {CURRENCY} limit for channel {case}")
        if case == "ATM":
            amount = (limit // (100 * MAD) + self._rng.randint(1, 50)) * 100 * MAD
            cash = internal_account(payer.bank, AccountKind.CASH, CURRENCY)
            payment = self._payment(payer, payer.bank, cash, amount, "ATM", "CASH_WITHDRAWAL")
        elif case == "MOBILE":
            amount = limit + self._rng.randint(1, 40_000) * MAD
            payee = self._other_customer(payer, other_bank=True)
            payment = self._payment(payer, payee.bank, payee.number, amount, "MOBILE", "TRANSFER")
        else:
            holder = "Riad Zitoun, Marrakech" if case == "POS" else "Royal Air Maroc"
            merchant = self._merchants[holder]
            amount = limit + self._rng.randint(1, 40_000) * MAD
            payment = self._payment(
                payer,
                merchant.bank,
                merchant.number,
                amount,
                case,
                "PURCHASE",
                mcc=self._mcc(merchant),
            )
        return _signed("over_limit", payment)

    def _malformed(self) -> SimulatedMessage:
        payer = self._rng.choice(self._customers)
        key = payer.number.encode()
        if self._codec is not None and self._rng.randrange(2):
            merchant = self._merchants["Marjane Holding"]
            payment = self._payment(
                payer,
                merchant.bank,
                merchant.number,
                10_000,
                "POS",
                "PURCHASE",
                mcc=self._mcc(merchant),
            )
            whole = self._codec.encode(PAYMENT_INITIATED.name, payment)
            # Cut within the first half of the body: a later field is always missing.
            cut = self._rng.randint(HEADER_BYTES, HEADER_BYTES + (len(whole) - HEADER_BYTES) // 2)
            return SimulatedMessage("malformed", raw=whole[:cut], key=key, signer=payer.bank)
        size = self._rng.randint(1, MAX_RAW_BYTES)
        raw = self._rng.randbytes(size)
        return SimulatedMessage("malformed", raw=raw, key=key, signer=payer.bank)

    # --- forgeries: refused before anything else, nothing of them recorded ------------

    def _forged_payer_bank(self) -> SimulatedMessage:
        """Bank A signs, with its own valid key, a payment from a bank B customer to itself."""
        payer = self._rng.choice(self._customers)
        forger = self._rng.choice([b for b in self._retail_banks if b != payer.bank])
        payee = self._rng.choice([c for c in self._customers if c.bank == forger])
        amount = self._amount_mad(100, 5_000)
        payment = self._payment(payer, payee.bank, payee.number, amount, "WEB", "TRANSFER")
        return SimulatedMessage("forged_payer_bank", payment, signer=forger)

    def _unsigned_payment(self) -> SimulatedMessage:
        """A payment no bank signed: whoever wrote it to the topic, no bank vouches for it."""
        payer = self._rng.choice(self._customers)
        payee = self._other_customer(payer, other_bank=self._rng.randrange(2) == 0)
        amount = self._amount_mad(50, 3_000)
        payment = self._payment(payer, payee.bank, payee.number, amount, "MOBILE", "TRANSFER")
        return SimulatedMessage("unsigned_payment", payment, signer=None)


@dataclass(frozen=True, slots=True)
class _QueuedStep:
    """A step of the last draw's payment, made into a message when its turn comes."""

    kind: str  # a key of STEP_KINDS
    payment: dict[str, Any]
    sender: str
    amount: int | None
    final: bool
    reason: str | None


def _signed(kind: str, payment: dict[str, Any]) -> SimulatedMessage:
    """A payment as its payer's bank publishes it: signed with that bank's key."""
    return SimulatedMessage(kind, payment, signer=str(payment["payer_bank"]))


MERCHANT_MCC = {
    "Royal Air Maroc": "4511", "Air Arabia Maroc": "4511", "Jumia Maroc": "5311",
    "Marjane Holding": "5411", "Afriquia SMDC": "5541", "Maroc Telecom": "4814",
    "Riad Zitoun, Marrakech": "7011",
}  # fmt: skip

Builder = Callable[["TrafficSimulator"], SimulatedMessage | None]


def _builder(method: Callable[[TrafficSimulator, str], SimulatedMessage | None],
             kind: str) -> Builder:  # fmt: skip
    """The builder of ``kind`` from a method that builds several kinds."""
    return lambda simulator: method(simulator, kind)


BUILDERS: Mapping[str, Builder] = {
    "ecommerce_airline": TrafficSimulator._ecommerce_airline,
    "ecommerce": TrafficSimulator._ecommerce,
    "hot_merchant": TrafficSimulator._hot_merchant,
    "vignette": TrafficSimulator._vignette,
    "egov_tax": TrafficSimulator._egov_tax,
    "atm_withdrawal": TrafficSimulator._atm_withdrawal,
    "pos_card": TrafficSimulator._pos_card,
    "mobile_transfer": TrafficSimulator._mobile_transfer,
    "interbank_transfer": TrafficSimulator._interbank_transfer,
    "branch_transfer": TrafficSimulator._branch_transfer,
    "unknown_account": TrafficSimulator._unknown_account,
    "insufficient_funds": TrafficSimulator._insufficient_funds,
    "duplicate_retry": TrafficSimulator._duplicate_retry,
    "closed_account": TrafficSimulator._closed_account,
    "over_limit": TrafficSimulator._over_limit,
    "malformed": TrafficSimulator._malformed,
    "forged_payer_bank": TrafficSimulator._forged_payer_bank,
    "unsigned_payment": TrafficSimulator._unsigned_payment,
    **{kind: _builder(TrafficSimulator._card_authorization, kind)
       for kind in ("card_capture", "card_partial_capture", "card_split_capture", "card_void",
                    "card_over_capture", "card_expiry")},
    **{kind: _builder(TrafficSimulator._airline_refund, kind)
       for kind in ("airline_refund", "airline_partial_refund", "misdirected_refund")},
    "transfer_return": TrafficSimulator._transfer_return,
}  # fmt: skip


# --- publishing -------------------------------------------------------------------------


class TokenBucket:
    """Paces calls to ``rate_per_s``, allowing bursts of at most ``burst`` (50 ms worth)."""

    def __init__(
        self,
        rate_per_s: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not 0 < rate_per_s <= MAX_RATE_PER_S:
            raise ValueError(f"rate_per_s={rate_per_s} must be in (0, {MAX_RATE_PER_S}]")
        self.rate_per_s = rate_per_s
        self.burst = max(1, rate_per_s // 20)
        self._clock, self._sleep = clock, sleep
        self._tokens = 1.0
        self._last = clock()

    def take(self) -> None:
        """Block until a token is available, then spend it."""
        self._refill()
        if self._tokens < 1:
            self._sleep((1 - self._tokens) / self.rate_per_s)
            self._refill()
        self._tokens -= 1

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate_per_s)
        self._last = now


@dataclass
class SimulationReport:
    """What the simulator published, per kind, channel and expected outcome."""

    seed: int
    run_tag: str | None
    published: int = 0  # messages the broker acknowledged
    malformed: int = 0
    signed: int = 0  # messages sent with a bank's signature (a forgery's included)
    forged: int = 0  # messages the switch must refuse as a security matter
    steps: int = 0  # steps the banks asked for (captures, voids, refunds, returns)
    by_kind: Counter[str] = field(default_factory=Counter)
    by_channel: Counter[str] = field(default_factory=Counter)
    by_expected: Counter[str] = field(default_factory=Counter)  # "settled", "rejected AC01", ...
    # Steps as the ledger should record them: "CAPTURE applied", "CAPTURE refused AM09", and
    # "EXPIRE applied" for each hold left to expire (the switch's own step).
    by_step: Counter[str] = field(default_factory=Counter)
    elapsed_s: float = 0.0

    @property
    def payments(self) -> int:
        """Messages that are not steps: payments, malformed and forged messages."""
        return sum(self.by_kind.values()) - self.steps

    @property
    def expiries(self) -> int:
        """Holds the switch must expire."""
        return self.by_step[EXPIRED_BY_SWITCH]

    def count(self, message: SimulatedMessage) -> None:
        self.by_kind[message.kind] += 1
        if message.raw is not None:
            self.malformed += 1
        if message.signer is not None:
            self.signed += 1
        if message.kind in SECURITY_KINDS:
            self.forged += 1
        if message.channel:
            self.by_channel[message.channel] += 1
        outcome = message.expected_outcome
        reason = message.expected_reason
        expected = f"{outcome} {reason}" if reason else outcome
        self.by_expected[expected] += 1
        if message.step is not None:
            self.steps += 1
            self.by_step[f"{message.step['step']} {expected}"] += 1
        elif message.kind == "card_expiry":
            self.by_step[EXPIRED_BY_SWITCH] += 1

    def summary(self) -> str:
        rate = self.published / self.elapsed_s if self.elapsed_s > 0 else 0.0
        lines = [
            f"published {self.published:,} messages in {self.elapsed_s:.1f} s "
            f"(~{rate:,.0f}/s; seed {self.seed}, run {self.run_tag or '-'}), "
            f"{self.malformed:,} malformed; {self.signed:,} signed, {self.forged:,} forged",
            "by kind:    " + _counts(self.by_kind),
            "by channel: " + _counts(self.by_channel),
            "expected:   " + _counts(self.by_expected),
        ]
        if self.by_step:
            lines.append("steps:      " + _counts(self.by_step))
        return "\n".join(lines)


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in counter.most_common())


def new_run_tag() -> str:
    """A short tag unique per run (milliseconds since the epoch, base 36)."""
    n, digits = time.time_ns() // 1_000_000, []
    while n:
        n, d = divmod(n, 36)
        digits.append("0123456789abcdefghijklmnopqrstuvwxyz"[d])
    return "".join(reversed(digits))[-MAX_RUN_TAG_CHARS:]


def simulation_signers(reference: Mapping[str, Any], seed: int) -> Signers:
    """The simulated banks' keys for ``seed``: one per bank of the reference data."""
    return workload_signers(reference, str(seed))


def register_simulated_keys(settings: Settings, signers: Signers) -> int:
    """Give the ledger ``settings`` names the simulated banks' public keys (new ones only)."""
    engine = make_engine(settings.ledger_url)
    try:
        return register_signers(engine, signers, SIMULATED_KEYS_VALID_FROM)
    except SQLAlchemyError as exc:
        cause = getattr(exc, "orig", None) or exc
        raise PublisherError(
            "cannot register the simulated banks' keys in the ledger (load its reference "
            f"data first: sakk db upgrade, sakk accounts load): {cause}"
        ) from exc
    finally:
        engine.dispose()


def publish_message(publisher: PaymentPublisher, message: SimulatedMessage) -> None:
    """Send one simulated message as its kind says: signed by its payer's bank, or forged;
    a step signed by its sender bank, keyed by its payment's payer account."""
    if message.raw is not None:
        publisher.publish_raw(message.raw, message.key, signer=message.signer)
        return
    if message.step is not None:  # a bank's step, as any bank sends one (sakk publish too)
        if message.signer != message.step["sender_bank"]:
            raise ValueError(f"a {message.kind} step signed by another bank than its sender")
        publisher.publish_step(message.step)
        return
    if message.payment is None:
        raise ValueError(f"a {message.kind} message without a payment or bytes")
    if message.signer == message.payment["payer_bank"]:
        publisher.publish(message.payment)
        return
    value = publisher.encode(message.payment)  # a forgery: another bank signs, or none
    key = PAYMENT_INITIATED.key(message.payment)
    publisher.publish_raw(value, key, signer=message.signer)


class LiveSimulation:
    """Publishes simulated traffic in phases: one simulator, one publisher, one stream.

    Each ``publish`` continues where the last one stopped: the funds shadow, the bank
    references and the ids carry over, so labels stay true from phase to phase (a fresh
    ``simulate`` per phase would start the shadow again from opening balances that the
    earlier phases spent, and some good payments would fail for funds). Use it as a
    context manager; ``register_keys`` and ``lifecycle`` as in :func:`simulate`. A phase
    never ends between a payment and its steps.
    """

    def __init__(
        self,
        settings: Settings,
        seed: int = 1,
        reference_path: Path | str | None = None,
        run_tag: str | None = None,
        register_keys: bool = True,
        profile: str = UNIFORM,
        lifecycle: bool = False,
    ) -> None:
        if profile not in MIXES:
            raise ValueError(f"profile={profile!r}: expected one of {sorted(MIXES)}")
        self.settings, self.seed, self.profile = settings, seed, profile
        self.lifecycle = lifecycle
        self.run_tag = run_tag or new_run_tag()
        self._reference = read_file(Path(reference_path or settings.reference_file))
        self._signers = simulation_signers(self._reference, seed)
        self._register_keys = register_keys
        self._publisher: PaymentPublisher | None = None
        self._simulator: TrafficSimulator | None = None

    def __enter__(self) -> LiveSimulation:
        if self._register_keys:
            register_simulated_keys(self.settings, self._signers)
        publisher = PaymentPublisher(
            self.settings, client_id="sakk-simulator", signers=self._signers
        ).start()
        self._simulator = TrafficSimulator(
            self._reference, self.seed, utc_now_ms(), codec=publisher.codec, live=True,
            run_tag=self.run_tag, profile=self.profile, lifecycle=self.lifecycle,
            hold_expiry_s=self.settings.hold_expiry_s,
            max_event_age_s=self.settings.max_event_age_s,
        )  # fmt: skip
        self._publisher = publisher
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            publisher.__exit__(exc_type, exc, tb)  # flushes; keeps an original error visible

    def publish(
        self,
        payments: int,
        rate_per_s: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> SimulationReport:
        """Publish the stream's next ``payments`` messages; what this phase sent, acknowledged.

        ``rate_per_s`` and ``progress`` as in :func:`simulate`.
        """
        if self._publisher is None or self._simulator is None:
            raise RuntimeError("use `with LiveSimulation(settings) as simulation:`")
        if not 0 < payments <= MAX_PAYMENTS:
            raise ValueError(f"payments={payments} must be in [1, {MAX_PAYMENTS}]")
        publisher, messages = self._publisher, self._simulator.generate(payments)
        bucket = TokenBucket(rate_per_s) if rate_per_s is not None else None
        report = SimulationReport(self.seed, self.run_tag)
        before = publisher.published
        started = time.monotonic()
        for sent in range(1, payments + 1):
            if bucket is not None:
                bucket.take()  # before generating: occurred_at is the time it is sent
            message = next(messages)
            publish_message(publisher, message)
            report.count(message)
            if progress is not None and sent % PROGRESS_EVERY == 0:
                progress(sent)
        publisher.flush()
        report.published = publisher.published - before
        report.elapsed_s = time.monotonic() - started
        if progress is not None:
            progress(payments)
        return report


def simulate(
    settings: Settings,
    payments: int,
    seed: int = 1,
    rate_per_s: int | None = None,
    progress: Callable[[int], None] | None = None,
    reference_path: Path | str | None = None,
    run_tag: str | None = None,
    register_keys: bool = True,
    profile: str = UNIFORM,
    lifecycle: bool = False,
) -> SimulationReport:
    """Publish ``payments`` simulated messages (live times) and report what was sent.

    ``rate_per_s`` paces publishing (token bucket; None: as fast as the producer goes).
    ``progress`` is called with the number of messages sent so far, every
    ``PROGRESS_EVERY`` messages and once at the end. ``run_tag`` defaults to a fresh
    one, so each run's ids and bank references are new. ``register_keys``: first give
    the ledger (``settings.ledger_url``, its reference data loaded) the simulated banks'
    public keys, as each bank's operator would; off when the switch already has them.
    ``profile``: the mix, ``uniform`` or ``skew`` (``MIXES``). ``lifecycle``: add the
    lifecycle traffic (authorizations and their steps, refunds, returns: ``LIFECYCLE_MIX``);
    ``payments`` then counts the steps among the messages.
    """
    if not 0 < payments <= MAX_PAYMENTS:
        raise ValueError(f"payments={payments} must be in [1, {MAX_PAYMENTS}]")
    with LiveSimulation(settings, seed, reference_path, run_tag, register_keys,
                        profile, lifecycle) as simulation:  # fmt: skip
        return simulation.publish(payments, rate_per_s, progress)
