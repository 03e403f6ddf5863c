"""The chaos run's pressing banks: two banks whose payments run into their interbank limits.

Two banks are added to the run's reference data (``sakk accounts load``'s path), each
with a few rich customers who only ever pay by branch transfer to other banks:

- bank ``901`` is bound by its **net debit cap**: ample liquidity, a tight cap (set by an
  audited operator action, ``limits.cap``, before the traffic starts), so its payments
  beyond the cap are refused ``AM23``; it also receives a little from ``902``, and gets
  that headroom back;
- bank ``902`` is bound by its **liquidity**: an ample cap, a tight deposit, so its
  payments beyond it are refused ``AM04``; it receives nothing but its own deposits.

Both send several times what their limits can ever let through (the limits are sized
from the number of payments, :func:`limits_for`): however the faults reorder things,
some of their payments settle and many are refused. Which ones is up to timing (a
payment received, a deposit, a settled window each give headroom back), so each pressing
payment may end SETTLED or FAILED with its bank's reason, nothing else; the invariants
(:mod:`tooling.chaos.risk_checks`) prove that no position ever went beyond its limits.

The payments are an extra flow: their own ``random.Random`` (from the seed), their own
references and times, placed among the run's messages at seeded positions, so the bytes
of the other banks' traffic are those of a run without them. Customers' funds never
decide (each has far more than it can ever send), so an ``AM04`` of bank ``902`` is its
liquidity, never its customer's balance.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from engine.ids import switch_id_of
from engine.risk.limits import CAP_EXCEEDED, INSUFFICIENT_LIQUIDITY
from tooling.workload.core import CURRENCY, Minter

CAP_BOUND, LIQUIDITY_BOUND = "901", "902"
NAMES = {
    CAP_BOUND: "Chaos bank pressed on its cap",
    LIQUIDITY_BOUND: "Chaos bank pressed on its liquidity",
}
REASONS: Mapping[str, str] = {CAP_BOUND: CAP_EXCEEDED, LIQUIDITY_BOUND: INSUFFICIENT_LIQUIDITY}
CUSTOMERS_PER_BANK = 3
CUSTOMER_BALANCE_MINOR = 10**10  # 100,000,000.00 MAD: funds never decide
AMOUNT_MINOR = (3_000_000, 9_000_000)  # 30,000.00 to 90,000.00 MAD: branch transfers
MIN_PAYMENTS_PER_BANK = 10
SHARE_PERMILLE = 100  # each bank sends this share of the run's payments (at least the min)
TO_THE_OTHER_PERMILLE = 100  # of 902's payments, those to 901's customers
# Each limit is this much per payment its bank sends: an eighth of the average amount, so
# that even with every headroom given back (a window settled, a deposit, what 901 receives)
# the bank can send at most about half of what it tries to (the module's docstring).
LIMIT_PER_PAYMENT_MINOR = 750_000
AMPLE = 100  # the limit that does not bind is this many times the one that does
CAP_ALERT_PERCENT = 50  # 901 is alerted at half its cap: crossings happen under faults
EARLY_PAYMENTS, EARLY_SHARE = 3, 0.02  # 902's first ones, within the first 2% of the run
LABEL = {CAP_BOUND: "pressing_cap", LIQUIDITY_BOUND: "pressing_liquidity"}


@dataclass(frozen=True)
class BankPlan:
    """One pressing bank's limits: in the reference data, then as the operator sets them."""

    bank: str
    cap_minor: int  # what the operator sets before the traffic (limits.cap)
    reference_cap_minor: int  # what the reference data loads
    liquidity_minor: int  # the first deposit, from the reference data
    alert_percent: int
    payments: int


@dataclass(frozen=True)
class PressingPlan:
    """The pressing banks, what the run adds to the reference data, and their messages."""

    seed: int
    banks: Mapping[str, BankPlan]
    customers: Mapping[str, tuple[str, ...]]  # bank -> its customers' account numbers

    @property
    def funds_in_minor(self) -> int:
        """902's deposit during the run: half its first one."""
        return self.banks[LIQUIDITY_BOUND].liquidity_minor // 2

    @property
    def funds_out_minor(self) -> int:
        """901's withdrawal during the run: a tenth of its deposit, far above its cap, far
        below what it leaves: always posted."""
        return self.banks[CAP_BOUND].liquidity_minor // 10

    def extend(self, reference: Mapping[str, Any]) -> dict[str, Any]:
        """``reference`` with the pressing banks, their customers and their limits."""
        out = dict(reference)
        out["banks"] = [*reference.get("banks", []), *(
            {"code": b, "name": NAMES[b], "bic": None, "webhook_url": None} for b in self.banks
        )]  # fmt: skip
        out["accounts"] = [*reference.get("accounts", []), *(
            {"number": n, "bank": b, "kind": "CUSTOMER", "holder": f"{NAMES[b]} customer {i}",
             "currency": CURRENCY, "opening_balance_minor": CUSTOMER_BALANCE_MINOR,
             "overdraft_limit_minor": 0, "status": "ACTIVE"}
            for b, numbers in self.customers.items() for i, n in enumerate(numbers)
        )]  # fmt: skip
        out["bank_limits"] = [*reference.get("bank_limits", []), *(
            {"bank": p.bank, "currency": CURRENCY, "net_debit_cap_minor": p.reference_cap_minor,
             "alert_percent": p.alert_percent, "liquidity_minor": p.liquidity_minor}
            for p in self.banks.values()
        )]  # fmt: skip
        return out


def limits_for(payments: int, seed: int) -> PressingPlan:
    """The pressing banks of a run of ``payments``: their limits sized from what they send."""
    per_bank = max(MIN_PAYMENTS_PER_BANK, payments * SHARE_PERMILLE // 1000)
    tight = per_bank * LIMIT_PER_PAYMENT_MINOR
    banks = {
        CAP_BOUND: BankPlan(CAP_BOUND, tight, AMPLE * tight, AMPLE * tight, CAP_ALERT_PERCENT,
                            per_bank),
        LIQUIDITY_BOUND: BankPlan(LIQUIDITY_BOUND, AMPLE * tight, AMPLE * tight, tight, 80,
                                  per_bank),
    }  # fmt: skip
    customers = {
        b: tuple(f"{b}{'0' * 19}{i + 1:02d}" for i in range(CUSTOMERS_PER_BANK)) for b in banks
    }
    return PressingPlan(seed, banks, customers)


@dataclass(frozen=True)
class PressingPayment:
    """A pressing bank's payment: its message's position among the run's, and its record."""

    position: float
    record: dict[str, Any]
    label: str
    reason: str  # the reason it fails with when its bank's limit refuses it


def pressing_payments(
    plan: PressingPlan, others: Sequence[tuple[str, str]], start: datetime, span: float
) -> list[PressingPayment]:
    """Every pressing payment, each at a seeded position in ``[0, span)``.

    ``others``: the other banks' active customers (bank, number), the payees of most of
    them. Drawn from their own generator: the run's other messages are unchanged.
    """
    rng = random.Random(f"chaos/{plan.seed}/pressing")
    made: list[PressingPayment] = []
    count = 0
    for bank, p in plan.banks.items():
        for i in range(p.payments):
            count += 1
            if bank == LIQUIDITY_BOUND and rng.randrange(1000) < TO_THE_OTHER_PERMILLE:
                payee = (CAP_BOUND, rng.choice(plan.customers[CAP_BOUND]))
            else:
                payee = rng.choice(others)
            record = _record(rng, plan.seed, count, start, bank,
                             rng.choice(plan.customers[bank]), payee)  # fmt: skip
            # 902's first payments open the run: its exposure must be positive early,
            # for the withdrawal that must be refused (tooling.chaos.operator).
            early = bank == LIQUIDITY_BOUND and i < EARLY_PAYMENTS
            at = rng.uniform(0, span * EARLY_SHARE if early else span)
            made.append(PressingPayment(at, record, LABEL[bank], REASONS[bank]))
    return made


def _record(
    rng: random.Random, seed: int, count: int, start: datetime, bank: str, account: str,
    payee: tuple[str, str],
) -> dict[str, Any]:  # fmt: skip
    ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(2)]
    return {
        "event_id": ids[0], "payment_id": ids[1],
        "bank_reference": f"PR{seed % 10**6:06d}-{count:08d}",
        "occurred_at": start + timedelta(milliseconds=count),
        "payer_bank": bank, "payer_account": account,
        "payee_bank": payee[0], "payee_account": payee[1],
        "amount_minor": rng.randint(*AMOUNT_MINOR), "currency": CURRENCY,
        "channel": "BRANCH", "payment_type": "TRANSFER",
        "merchant_category_code": None, "egov_service": None, "intent": "SALE",
        "remittance_info": None,
    }  # fmt: skip


def payment_id_of(payment: PressingPayment) -> str:
    return switch_id_of(payment.record)


def mint_pressing(mint: Minter, payments: Sequence[PressingPayment]) -> list[tuple[float, Any]]:
    """The signed messages of ``payments`` (each by its payer's bank), at their positions."""
    return [(p.position, mint.message(p.record, p.label)) for p in payments]
