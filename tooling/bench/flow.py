"""The full flow, measured: each consumer in its own process, on SQLite or PostgreSQL.

One *session* is one isolated run (fresh topics, a fresh ledger) with one fleet of
consumer processes and one simulated stream (``tooling.workload.traffic.LiveSimulation``),
in phases:

1. **Throughput** (optional): the payments are all published before any consumer
   starts (so the publisher is not what is measured); payments/s is measured from the
   validator's first handled event to the last finished notification, using the
   ledger's own timestamps, and each process's CPU and peak memory are read once the
   flow has drained.
2. **Latency**, one offered rate after another, each for the same number of seconds;
   each rate starts once the previous one has drained, and its percentiles are computed
   from its own payments only (``tooling.bench.latency``). Without a throughput phase, a
   few payments first warm the fleet up (consumer groups join).
3. **Knee search** (optional): between the last rate whose p99 stayed under 1 s and the
   first that did not, the midpoint is offered the same way, a bounded number of times
   within a time budget (``tooling.bench.knee``).

One simulated stream for the whole session keeps the simulator's funds shadow true
from phase to phase. A session whose ledger does not balance or whose counts do not
add up, or, when asked, whose hash chain fails the auditor's verification, raises
:class:`BenchmarkCheckError` instead of reporting a figure (``tooling.bench.checks``).

Every payment is signed as its payer's bank and the simulated banks' public keys are
registered in each run's ledger, so the validator's figures include checking every
signature, as in production.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from engine.config import Settings
from engine.kafka.client import create_topics
from engine.ledger.reference import load_reference_data
from engine.read.reports import processing_window
from engine.supervisor import ConsumerProcess, Fleet
from sakk.app import STAGE_NAMES, TOPOLOGY, ledger_engine
from tooling.bench.checks import BenchmarkCheckError, verify, wait_drained
from tooling.bench.knee import MAX_KNEE_STEPS, next_probe
from tooling.bench.latency import LatencyResult, latencies_s, payment_ids, summarize

if TYPE_CHECKING:
    from tooling.workload.traffic import LiveSimulation

__all__ = ["BenchmarkCheckError", "FlowResult", "LatencyResult", "SessionPlan", "run_session"]

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
BENCH_CUSTOMERS_PER_BANK = 1_500  # enough payers that live traffic never runs dry of funds
SESSION_SEED = 4  # the same stream every run: one seed for every session
WARM_UP_PAYMENTS = 20
MAX_SESSION_PAYMENTS = 2_000_000
MAX_INSTANCES = 8
MAX_RATE_PER_S = 100_000
MAX_RATE_SECONDS = 3_600
MAX_RATES = 16
# Below this share of hot payments the skew run did not test what it says (its hot
# payers ran dry of funds): no figure.
SKEW_MIN_HOT_SHARE = 0.65
# No knee probe starts once the search has run this long (each probe offers its rate for
# ``rate_seconds``, then drains).
KNEE_BUDGET_S = 180.0


@dataclass(frozen=True)
class ProcessUsage:
    label: str
    peak_rss_bytes: int
    cpu_s: float


@dataclass
class FlowResult:
    backend: str
    payments: int
    seconds: float
    processes: list[ProcessUsage] = field(default_factory=list)
    profile: str = "uniform"
    instances: int = 1  # per stage, in one consumer group

    @property
    def payments_per_s(self) -> float:
        return self.payments / self.seconds if self.seconds else 0.0

    def cpu_s_by_stage(self) -> dict[str, float]:
        """CPU seconds of each stage, its instances added up."""
        total: dict[str, float] = {}
        for p in self.processes:
            stage = p.label.rsplit("-", 1)[0]
            total[stage] = total.get(stage, 0.0) + p.cpu_s
        return total


@dataclass(frozen=True)
class SessionPlan:
    """What one session runs: its traffic, its fleet, its phases, its checks."""

    profile: str = "uniform"  # the traffic mix: tooling.workload.profiles.MIXES
    throughput_payments: int = 0  # 0: no throughput phase
    instances: int = 1  # per stage
    rates_per_s: tuple[int, ...] = ()  # latency phases, in this order
    rate_seconds: int = 10
    verify_chain: bool = False  # also the auditor's hash-chain verification
    knee_steps: int = 0  # at most this many knee probes after the curve (tooling.bench.knee)

    def __post_init__(self) -> None:
        if not 0 <= self.throughput_payments <= MAX_SESSION_PAYMENTS:
            raise ValueError(f"throughput_payments must be in [0, {MAX_SESSION_PAYMENTS}]")
        if not 1 <= self.instances <= MAX_INSTANCES:
            raise ValueError(f"instances={self.instances} must be in [1, {MAX_INSTANCES}]")
        if len(self.rates_per_s) > MAX_RATES or not all(
            0 < r <= MAX_RATE_PER_S for r in self.rates_per_s
        ):
            raise ValueError(f"at most {MAX_RATES} rates, each in (0, {MAX_RATE_PER_S}] /s")
        if not 1 <= self.rate_seconds <= MAX_RATE_SECONDS:
            raise ValueError(f"rate_seconds={self.rate_seconds} must be in [1, {MAX_RATE_SECONDS}]")
        if not self.throughput_payments and not self.rates_per_s:
            raise ValueError("a session measures throughput, latency, or both")
        if not 0 <= self.knee_steps <= MAX_KNEE_STEPS:
            raise ValueError(f"knee_steps={self.knee_steps} must be in [0, {MAX_KNEE_STEPS}]")
        probes = max(self.rates_per_s, default=0) * self.rate_seconds * self.knee_steps
        offered = sum(self.rates_per_s) * self.rate_seconds + self.throughput_payments + probes
        if offered > MAX_SESSION_PAYMENTS:
            raise ValueError(
                f"{offered:,} payments in one session: at most {MAX_SESSION_PAYMENTS:,}"
            )


@dataclass
class SessionResult:
    backend: str
    plan: SessionPlan
    flow: FlowResult | None
    latencies: list[LatencyResult]
    published: int
    hot_share: float  # of messages the skew profile sends to the hot merchant (0 if uniform)
    chain_entries_verified: int | None  # None: the chain was not verified
    knee_probes: list[LatencyResult] = field(default_factory=list)  # rates the knee search added


def process_usage(member: ConsumerProcess) -> ProcessUsage:
    """Peak resident memory and CPU seconds of a live child process, from /proc."""
    pid = member.process.pid if member.process else 0
    peak = 0
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                peak = int(line.split()[1]) * 1024
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    cpu_s = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S
    return ProcessUsage(member.label, peak, cpu_s)


@contextmanager
def isolated_run(
    base: Settings, database_url: str, work_dir: Path
) -> Iterator[tuple[Settings, Engine]]:
    """Fresh topics, a fresh ledger with a large reference data set, for one measurement."""
    from tooling.reference_data import build_reference

    prefix = f"bench{uuid.uuid4().hex[:8]}"
    reference_path = work_dir / "reference.json"
    if not reference_path.exists():
        reference_path.write_text(
            json.dumps(build_reference(customers_per_bank=BENCH_CUSTOMERS_PER_BANK))
        )
    settings = base.replace(
        topic_prefix=prefix, consumer_group_prefix=prefix, database_url=database_url,
        reference_file=reference_path, data_dir=work_dir,
        notify_log_path=work_dir / f"{prefix}.jsonl",
        metrics_port=0,
    )  # fmt: skip
    create_topics(settings)
    engine = ledger_engine(settings, migrate=True)
    load_reference_data(engine, json.loads(reference_path.read_text()))
    try:
        yield settings, engine
    finally:
        engine.dispose()


def run_session(
    base: Settings,
    backend: str,
    database_url: str,
    plan: SessionPlan,
    work_dir: Path,
    on_progress: Callable[[str], None] = lambda _: None,
) -> SessionResult:
    """Run ``plan`` on a fresh ledger at ``database_url``; every figure checked before return."""
    from tooling.workload.traffic import LiveSimulation

    label = backend if plan.profile == "uniform" else f"{backend} {plan.profile}"
    if plan.instances > 1:
        label += f" ×{plan.instances}"
    with isolated_run(base, database_url, work_dir) as (settings, engine):
        if plan.instances > settings.topic_partitions:
            raise ValueError(
                f"{plan.instances} instances per stage, {settings.topic_partitions} partitions "
                "per topic: the extra instances would sit idle (SAKK_TOPIC_PARTITIONS)"
            )
        fleet = Fleet(settings, work_dir / "logs" / settings.topic_prefix, TOPOLOGY)
        with LiveSimulation(
            settings, SESSION_SEED, settings.reference_file, profile=plan.profile
        ) as simulation:
            phases = _Phases(backend, plan, engine, fleet, simulation, on_progress, label)
            try:
                flow = None
                if plan.throughput_payments:
                    flow = phases.throughput()
                else:
                    phases.warm_up()
                latencies = [phases.latency(rate) for rate in plan.rates_per_s]
                probes = phases.knee_search(latencies)
            finally:
                fleet.stop()
        chain_entries = verify(engine, phases.published, chain=plan.verify_chain)
    hot_share = phases.sent["hot_merchant"] / phases.published if phases.published else 0.0
    if plan.profile == "skew" and hot_share < SKEW_MIN_HOT_SHARE:
        raise BenchmarkCheckError(
            f"the skewed run sent only {hot_share:.0%} of its messages to the hot merchant "
            f"(at least {SKEW_MIN_HOT_SHARE:.0%} needed): its payers ran dry of funds"
        )
    return SessionResult(backend, plan, flow, latencies, phases.published, hot_share, chain_entries,
                         probes)  # fmt: skip


@dataclass
class _Phases:
    """The phases of one session, sharing its fleet, its ledger and its simulated stream."""

    backend: str
    plan: SessionPlan
    engine: Engine
    fleet: Fleet
    simulation: LiveSimulation
    say: Callable[[str], None]
    label: str
    published: int = 0  # messages the broker acknowledged, every phase so far
    sent: Counter[str] = field(default_factory=Counter)  # by simulated kind

    def _publish(self, payments: int, rate_per_s: int | None = None) -> float:
        """Publish the stream's next ``payments``; the achieved publish rate."""
        report = self.simulation.publish(payments, rate_per_s)
        self.published += report.published
        self.sent.update(report.by_kind)
        return report.published / report.elapsed_s if report.elapsed_s else 0.0

    def _start_fleet(self) -> None:
        for stage in STAGE_NAMES:
            self.fleet.start(stage, self.plan.instances)

    def throughput(self) -> FlowResult:
        payments = self.plan.throughput_payments
        self.say(f"{self.label}: publishing {payments:,} payments")
        self._publish(payments)
        self._start_fleet()
        self.say(f"{self.label}: consumers draining")
        wait_drained(self.engine, self.published, self.fleet)
        usage = [process_usage(m) for m in self.fleet.members]
        first, last = processing_window(self.engine, TOPOLOGY.entry.name)
        seconds = (last - first).total_seconds() if first and last else 0.0
        return FlowResult(self.backend, self.published, seconds, usage, self.plan.profile,
                          self.plan.instances)  # fmt: skip

    def warm_up(self) -> None:
        self._start_fleet()
        self.say(f"{self.label}: warming up (consumer groups join)")
        self._publish(WARM_UP_PAYMENTS)
        wait_drained(self.engine, self.published, self.fleet)

    def latency(self, rate_per_s: int) -> LatencyResult:
        seconds = self.plan.rate_seconds
        before = payment_ids(self.engine)
        self.say(f"{self.label}: offering {rate_per_s:,} payments/s for {seconds}s")
        achieved = self._publish(rate_per_s * seconds, rate_per_s)
        wait_drained(self.engine, self.published, self.fleet)
        own = payment_ids(self.engine) - before
        measured = latencies_s(self.engine, own)
        if not measured:
            raise BenchmarkCheckError(f"no payment of the {rate_per_s:,}/s phase was notified")
        return summarize(self.backend, self.plan.profile, rate_per_s, seconds, achieved, measured)

    def knee_search(self, curve: list[LatencyResult]) -> list[LatencyResult]:
        """Probe the knee's bracket: at most ``knee_steps`` rates, none after KNEE_BUDGET_S."""
        probes: list[LatencyResult] = []
        deadline = time.monotonic() + KNEE_BUDGET_S
        for _step in range(self.plan.knee_steps):
            rate = next_probe(curve + probes)
            if rate is None or time.monotonic() > deadline:
                break
            self.say(f"{self.label}: knee search")
            probes.append(self.latency(rate))
        return probes


def scratch_dir(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="run-", dir=root))
