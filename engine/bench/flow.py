"""The full flow, measured: each consumer in its own process, on SQLite or PostgreSQL.

Throughput is measured with every payment already waiting in ``payments.initiated``
(so the publisher is not what is measured), from the validator's first handled
event to the last finished notification, using the ledger's own timestamps.
Latency is measured at a fixed offered rate, from each payment's initiation time
to its last notification. A run whose ledger does not balance or whose counts do
not add up raises :class:`BenchmarkCheckError` instead of reporting a figure.

Every payment is signed as its payer's bank and the simulated banks' public keys are
registered in each run's ledger (``producers.simulator.simulate``), so the validator's
figures include checking every signature, as in production.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine, func, select

from engine.app import STAGE_NAMES, ledger_engine
from engine.config import Settings
from engine.kafka.client import create_topics
from engine.ledger.checks import check_ledger, expected_notifications, flow_counts
from engine.ledger.database import read_only
from engine.ledger.models import Notification, Payment
from engine.ledger.reference import load_reference_data
from engine.ledger.reports import processing_window
from engine.supervisor import ConsumerProcess, Fleet

DRAIN_TIMEOUT_S = 900.0
READY_TIMEOUT_S = 60.0
CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
BENCH_CUSTOMERS_PER_BANK = 1_500  # enough payers that live traffic never runs dry of funds


class BenchmarkCheckError(RuntimeError):
    """The run's ledger or counts are wrong: no figure is reported for it."""


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

    @property
    def payments_per_s(self) -> float:
        return self.payments / self.seconds if self.seconds else 0.0


@dataclass
class LatencyResult:
    backend: str
    offered_per_s: int
    payments: int
    achieved_publish_per_s: float
    p50_s: float
    p95_s: float
    p99_s: float
    max_s: float


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


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return 0.0
    rank = max(int(-(-fraction * len(sorted_values) // 1)) - 1, 0)
    return sorted_values[min(rank, len(sorted_values) - 1)]


@contextmanager
def isolated_run(
    base: Settings, database_url: str, work_dir: Path
) -> Iterator[tuple[Settings, Engine]]:
    """Fresh topics, a fresh ledger with a large reference data set, for one measurement."""
    from producers.reference_data import build_reference

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


def wait_drained(engine: Engine, published: int, fleet: Fleet) -> None:
    engine = read_only(engine)  # never compete with the consumers for SQLite's write lock
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            counts = flow_counts(conn)
            expected, finished = expected_notifications(conn)
        if counts.terminal + counts.dead_lettered >= published and finished >= expected:
            return
        dead = fleet.check_alive()
        if dead:
            raise BenchmarkCheckError(
                f"consumer exited during the run: {dead} (logs in {fleet.log_dir})"
            )
        time.sleep(0.25)
    raise BenchmarkCheckError(f"flow did not drain within {DRAIN_TIMEOUT_S:.0f}s")


def verify(engine: Engine, published: int) -> None:
    with engine.connect() as conn:
        counts = flow_counts(conn)
        ledger = check_ledger(conn)
    if published != counts.terminal + counts.dead_lettered:
        raise BenchmarkCheckError(
            f"published {published} != settled {counts.settled} + rejected {counts.rejected} + "
            f"failed {counts.failed} + dead-lettered {counts.dead_lettered}"
        )
    if not ledger.ok:
        raise BenchmarkCheckError(f"ledger does not balance: {ledger.violations[:3]}")


def measure_full_flow(
    base: Settings,
    backend: str,
    database_url: str,
    payments: int,
    work_dir: Path,
    on_progress: Callable[[str], None] = lambda _: None,
) -> FlowResult:
    from producers.simulator import simulate

    with isolated_run(base, database_url, work_dir) as (settings, engine):
        on_progress(f"{backend}: publishing {payments:,} payments")
        report = simulate(
            settings, payments=payments, seed=4, reference_path=settings.reference_file
        )
        fleet = Fleet(settings, work_dir / "logs")
        for stage in STAGE_NAMES:
            fleet.start(stage)
        try:
            on_progress(f"{backend}: consumers draining")
            wait_drained(engine, report.published, fleet)
            usage = [process_usage(m) for m in fleet.members]
        finally:
            fleet.stop()
        verify(engine, report.published)
        first, last = processing_window(engine)
    seconds = (last - first).total_seconds() if first and last else 0.0
    return FlowResult(backend, report.published, seconds, usage)


def measure_latency(
    base: Settings,
    backend: str,
    database_url: str,
    rate_per_s: int,
    duration_s: int,
    work_dir: Path,
    on_progress: Callable[[str], None] = lambda _: None,
) -> LatencyResult:
    from producers.simulator import simulate

    with isolated_run(base, database_url, work_dir) as (settings, engine):
        fleet = Fleet(settings, work_dir / "logs")
        for stage in STAGE_NAMES:
            fleet.start(stage)
        try:
            on_progress(f"{backend}: warming up (consumer groups join)")
            warm = simulate(settings, payments=20, seed=5, reference_path=settings.reference_file)
            wait_drained(engine, warm.published, fleet)
            with engine.connect() as conn:
                warm_ids = set(conn.execute(select(Payment.payment_id)).scalars())
            on_progress(f"{backend}: offering {rate_per_s:,} payments/s for {duration_s}s")
            report = simulate(
                settings,
                payments=rate_per_s * duration_s,
                seed=6,
                rate_per_s=rate_per_s,
                reference_path=settings.reference_file,
            )
            wait_drained(engine, warm.published + report.published, fleet)
        finally:
            fleet.stop()
        verify(engine, warm.published + report.published)
        latencies = sorted(_latencies(engine, warm_ids))
    return LatencyResult(
        backend, rate_per_s, len(latencies),
        report.published / report.elapsed_s if report.elapsed_s else 0.0,
        percentile(latencies, 0.50), percentile(latencies, 0.95), percentile(latencies, 0.99),
        latencies[-1] if latencies else 0.0,
    )  # fmt: skip


def _latencies(engine: Engine, exclude: set[str]) -> list[float]:
    """Seconds from each payment's initiation to its last finished notification."""
    p, n = Payment.__table__, Notification.__table__
    query = (
        select(p.c.payment_id, p.c.occurred_at, func.max(n.c.finished_at))
        .join(n, n.c.payment_id == p.c.payment_id)
        .group_by(p.c.payment_id, p.c.occurred_at)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [_seconds(occurred, finished) for pid, occurred, finished in rows if pid not in exclude]


def _seconds(start: datetime, end: datetime) -> float:
    if (start.tzinfo is None) != (end.tzinfo is None):
        start, end = start.replace(tzinfo=None), end.replace(tzinfo=None)
    return max((end - start).total_seconds(), 0.0)


def scratch_dir(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="run-", dir=root))
