"""The read side timed on a large ledger: the console's searches and a payment's page.

Each query kind runs ``repeat`` times, each time in its own read-only snapshot (what a
screen does per request: ``engine.read.snapshot``), with arguments drawn from the
ledger itself by a seeded random stream: a payment's id, its bank reference, its
banks, the last four digits of its accounts, its time; every state, reason code and
channel in turn (the rare ones too); the first page, and a page deep in the list
(the cursor after a payment picked at random). Searches run as an operator and as a
bank user (whose search is split by side, ``engine.read.payments``); a payment's page
is its trace (``engine.read.trace``), as an operator and as its payer's bank.

A kind passes when its p99 is under ``BUDGET_MS``. The figures are printed, never
asserted: a timing test on a shared machine fails for reasons of its own.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, select

from engine.ledger.models import Payment
from engine.read.audience import Audience
from engine.read.paging import DEFAULT_PAGE, encode_cursor
from engine.read.payments import SEARCH, PaymentFilter, search_payments
from engine.read.snapshot import snapshot
from engine.read.trace import trace_payment
from engine.times import as_utc
from engine.topology import Topology

BUDGET_MS = 100.0  # p99 a screen's query must stay under
MAX_REPEAT = 100_000
WARM_UP = 5  # runs of each kind before the timed ones (not counted)
SAMPLE_PAYMENTS = 2_000  # payments the arguments are drawn from
STATES = (
    "SETTLED",
    "REJECTED",
    "FAILED",
    "AUTHORIZED",
    "CAPTURED",
    "VOIDED",
    "EXPIRED",
    "REFUNDED",
    "RETURNED",
)
REASONS = ("AC01", "AC04", "AM02", "AM04", "AM05")
CHANNELS = ("ATM", "BRANCH", "EGOV", "MOBILE", "POS", "WEB")


@dataclass(frozen=True)
class Sample:
    payment_id: str
    bank_reference: str
    payer_bank: str
    payee_bank: str
    payer_account: str
    payee_account: str
    occurred_at: datetime


@dataclass(frozen=True)
class KindResult:
    kind: str
    audience: str
    runs: int
    rows_mean: float
    empty: int  # runs that found nothing
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float

    @property
    def passed(self) -> bool:
        return self.p99_ms < BUDGET_MS

    def as_json(self) -> dict[str, Any]:
        return {**self.__dict__, "passed": self.passed}


Query = Callable[[Connection, Sample, int], int]  # rows found


def draw_samples(engine: Engine, seed: int, count: int = SAMPLE_PAYMENTS) -> list[Sample]:
    """``count`` payments of the ledger, chosen by a seeded stream (the same ledger: the same)."""
    p = Payment.__table__
    with snapshot(engine) as conn:
        ids = sorted(conn.execute(select(p.c.payment_id)).scalars())
        if not ids:
            raise ValueError("the ledger holds no payment: load one first")
        chosen = random.Random(seed).sample(ids, min(count, len(ids)))
        columns = [p.c[name] for name in Sample.__dataclass_fields__]
        rows = {
            r.payment_id: r
            for r in conn.execute(select(*columns).where(p.c.payment_id.in_(chosen)))
        }
    return [
        Sample(**{**rows[i]._asdict(), "occurred_at": as_utc(rows[i].occurred_at)}) for i in chosen
    ]


def _search(
    audience_of: Callable[[Sample], Audience],
    filter_of: Callable[[Sample, int], PaymentFilter],
    deep: bool = False,
) -> Query:
    def run(conn: Connection, s: Sample, i: int) -> int:
        cursor = deep_cursor(s) if deep else None
        page = search_payments(conn, audience_of(s), filter_of(s, i), cursor, DEFAULT_PAGE)
        return len(page)

    return run


def _last4(s: Sample) -> str:
    """The payee's account's last four digits (a merchant's, the treasury's: busy ones), or
    the payer's when the payee is a bank's own account (an ATM's cash)."""
    return s.payee_account[-4:] if s.payee_account[-4:].isdigit() else s.payer_account[-4:]


def _upto(s: Sample) -> datetime:
    """The end of a time range that holds the sample itself (never an empty search)."""
    return s.occurred_at + timedelta(seconds=1)


def _operator(_s: Sample) -> Audience:
    return Audience.operator()


def _payer_bank(s: Sample) -> Audience:
    return Audience.bank(s.payer_bank)


def _payee_bank(s: Sample) -> Audience:
    return Audience.bank(s.payee_bank)


def _trace(audience_of: Callable[[Sample], Audience], topology: Topology) -> Query:
    def run(conn: Connection, s: Sample, _i: int) -> int:
        view = trace_payment(conn, audience_of(s), s.payment_id, topology)
        return 1 + len(view.steps) + len(view.postings) + len(view.notifications)

    return run


@dataclass(frozen=True)
class KindSpec:
    """A query kind as a screen asks it: who asks, and the search (None: a payment's page)."""

    kind: str
    audience: str
    audience_of: Callable[[Sample], Audience]
    filter_of: Callable[[Sample, int], PaymentFilter] | None = None
    deep: bool = False  # the page after a payment picked at random (its cursor)


def deep_cursor(s: Sample) -> str:
    """The cursor of the page after ``s`` in a search's order (newest first)."""
    return encode_cursor(SEARCH, (s.occurred_at, s.payment_id))


def kind_specs() -> list[KindSpec]:
    """The console's searches and a payment's page, as an operator and as a bank."""
    hour, day = timedelta(hours=1), timedelta(days=1)
    f, k = PaymentFilter, KindSpec
    return [
        k("payment id", "operator", _operator, lambda s, i: f(payment_id=s.payment_id)),
        k("bank reference", "bank", _payer_bank, lambda s, i: f(bank_reference=s.bank_reference)),
        k(
            "bank + last hour",
            "operator",
            _operator,
            lambda s, i: f(bank=s.payee_bank, since=_upto(s) - hour, until=_upto(s)),
        ),
        k(
            "own, last day",
            "bank",
            _payer_bank,
            lambda s, i: f(since=_upto(s) - day, until=_upto(s)),
        ),
        k(
            "other bank + day",
            "bank",
            _payer_bank,
            lambda s, i: f(bank=s.payee_bank, since=_upto(s) - day, until=_upto(s)),
        ),
        k("account last four", "operator", _operator, lambda s, i: f(account_last4=_last4(s))),
        k(
            "account last four",
            "bank",
            _payer_bank,
            lambda s, i: f(account_last4=s.payer_account[-4:]),
        ),
        k("state", "operator", _operator, lambda s, i: f(state=STATES[i % len(STATES)])),
        k("state", "bank", _payee_bank, lambda s, i: f(state=STATES[i % len(STATES)])),
        k(
            "reason code",
            "operator",
            _operator,
            lambda s, i: f(reason_code=REASONS[i % len(REASONS)]),
        ),
        k(
            "reason code",
            "bank",
            _payer_bank,
            lambda s, i: f(reason_code=REASONS[i % len(REASONS)]),
        ),
        k("channel", "operator", _operator, lambda s, i: f(channel=CHANNELS[i % len(CHANNELS)])),
        k("first page", "operator", _operator, lambda s, i: f()),
        k("first page", "bank", _payer_bank, lambda s, i: f()),
        k("deep page", "operator", _operator, lambda s, i: f(), deep=True),
        k("deep page", "bank", _payee_bank, lambda s, i: f(), deep=True),
        k(
            "deep page, state",
            "bank",
            _payer_bank,
            lambda s, i: f(state=STATES[i % len(STATES)]),
            deep=True,
        ),
        k("payment page", "operator", _operator),
        k("payment page", "bank", _payer_bank),
    ]


def query_kinds(topology: Topology) -> list[tuple[str, str, Query]]:
    """(kind, audience, query): the console's searches and a payment's page."""
    return [
        (
            spec.kind,
            spec.audience,
            _trace(spec.audience_of, topology)
            if spec.filter_of is None
            else _search(spec.audience_of, spec.filter_of, spec.deep),
        )
        for spec in kind_specs()
    ]


def percentile(sorted_ms: list[float], share: float) -> float:
    """The nearest-rank percentile of sorted figures."""
    rank = max(1, min(len(sorted_ms), round(share * len(sorted_ms) + 0.5)))
    return sorted_ms[rank - 1]


def measure_kind(
    engine: Engine, kind: str, audience: str, query: Query, samples: list[Sample], repeat: int
) -> KindResult:
    """Run ``query`` ``repeat`` times (after a warm-up), each in a snapshot of its own."""
    if not 1 <= repeat <= MAX_REPEAT:
        raise ValueError(f"repeat={repeat}: expected 1..{MAX_REPEAT}")
    timings: list[float] = []
    rows = empty = 0
    for i in range(-WARM_UP, repeat):
        sample = samples[i % len(samples)]
        started = time.perf_counter()
        with snapshot(engine) as conn:
            found = query(conn, sample, i)
        elapsed = (time.perf_counter() - started) * 1000
        if i >= 0:
            timings.append(elapsed)
            rows += found
            empty += found == 0
    timings.sort()
    return KindResult(
        kind,
        audience,
        repeat,
        rows / repeat,
        empty,
        percentile(timings, 0.50),
        percentile(timings, 0.95),
        percentile(timings, 0.99),
        timings[-1],
    )


def load_average() -> float:
    """The machine's 1-minute load average (other work sharing the cores shows in the tails)."""
    return os.getloadavg()[0]


def run_read_bench(
    engine: Engine,
    topology: Topology,
    repeat: int,
    seed: int,
    say: Callable[[str], None] = lambda _t: None,
) -> list[KindResult]:
    """Every query kind, ``repeat`` times each, on the ledger behind ``engine``."""
    samples = draw_samples(engine, seed)
    results = []
    for kind, audience, query in query_kinds(topology):
        result = measure_kind(engine, kind, audience, query, samples, repeat)
        say(f"{kind} ({audience}): p99 {result.p99_ms:.1f} ms")
        results.append(result)
    return results
