"""``sakk bench``: end-to-end payments/s and latency, side by side with the raw Kafka hop."""

from __future__ import annotations

import json
import os
import platform
import shutil
import uuid
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import click
import psycopg
from rich.console import Console
from rich.table import Table

from engine.app import kafka_for
from engine.bench.flow import (
    BenchmarkCheckError,
    FlowResult,
    LatencyResult,
    measure_full_flow,
    measure_latency,
    scratch_dir,
)
from engine.bench.raw_hop import measure_raw_hop
from engine.bench.signatures import SignatureCheckError, VerificationResult, measure_verification
from engine.cli import cli
from engine.config import Settings
from engine.ledger.reference import read_file

POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PAYMENT_MESSAGE_BYTES = 210  # a PaymentInitiated in single-object Avro is about this size


@cli.command()
@click.option(
    "--payments", default=40_000, show_default=True, help="Payments per backend for throughput."
)
@click.option("--raw-messages", default=60_000, show_default=True, help="Messages for the raw hop.")
@click.option(
    "--latency-rate", default=2_000, show_default=True, help="Offered payments/s for latency."
)
@click.option(
    "--latency-seconds", default=20, show_default=True, help="How long the rate is offered."
)
@click.option("--backends", default="sqlite,postgresql", show_default=True)
@click.option(
    "--postgres-admin-url",
    default=POSTGRES_ADMIN_URL,
    show_default=True,
    envvar="SAKK_BENCH_POSTGRES_ADMIN_URL",
    help="Where a fresh database is created per run.",
)
@click.option(
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="JSON report (default: var/bench/latest.json).",
)
@click.pass_obj
def bench(
    settings: Settings,
    payments: int,
    raw_messages: int,
    latency_rate: int,
    latency_seconds: int,
    backends: str,
    postgres_admin_url: str,
    output: Path | None,
) -> None:
    """Measure the raw hop, the full flow per backend and the latency at a fixed rate.

    Every payment is signed as its payer's bank, and the simulated banks' keys are
    registered in each run's ledger; the validator's signature verification is also
    timed on its own (CPU per 1,000 payments).
    """
    console = Console()
    chosen = [b.strip() for b in backends.split(",") if b.strip()]
    unknown = set(chosen) - {"sqlite", "postgresql"}
    if unknown:
        raise click.UsageError(f"unknown backends {sorted(unknown)}: use sqlite and/or postgresql")
    root = settings.data_dir / "bench"
    work = scratch_dir(root)
    flows: list[FlowResult] = []
    latencies: list[LatencyResult] = []
    try:
        with kafka_for(settings) as live:
            say = lambda text: console.print(f"[dim]… {text}[/]")  # noqa: E731
            say(
                f"raw hop: {raw_messages:,} messages of {PAYMENT_MESSAGE_BYTES} bytes, "
                f"{live.topic_partitions} partitions"
            )
            raw = measure_raw_hop(
                live.replace(topic_prefix=f"raw{uuid.uuid4().hex[:6]}"),
                raw_messages,
                PAYMENT_MESSAGE_BYTES,
            )
            for backend in chosen:
                with _database(backend, work, postgres_admin_url) as url:
                    flows.append(measure_full_flow(live, backend, url, payments, work, say))
                with _database(backend, work, postgres_admin_url) as url:
                    latencies.append(
                        measure_latency(
                            live, backend, url, latency_rate, latency_seconds, work, say
                        )
                    )
        verification = measure_verification(
            read_file(settings.reference_file), settings.schemas_dir, settings.topic("initiated")
        )
    except (BenchmarkCheckError, SignatureCheckError) as exc:
        raise click.ClickException(f"benchmark run failed its correctness check: {exc}") from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = _report(raw, flows, latencies, live.topic_partitions, verification)
    _print(console, report)
    path = output or root / "latest.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"written {path}")


class _database:
    """A fresh ledger per measurement: a new SQLite file, or a new PostgreSQL database."""

    def __init__(self, backend: str, work: Path, admin_url: str):
        self.backend, self.work, self.admin_url = backend, work, admin_url
        self.name = f"sakk_bench_{uuid.uuid4().hex[:10]}"

    def __enter__(self) -> str:
        if self.backend == "sqlite":
            return f"sqlite:///{self.work / (self.name + '.db')}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        base = self.admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
        return f"{base}/{self.name}"

    def __exit__(self, *exc: object) -> None:
        if self.backend == "postgresql":
            with psycopg.connect(self.admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def _report(raw, flows: list[FlowResult], latencies: list[LatencyResult], partitions: int,  # type: ignore[no-untyped-def]
            verification: VerificationResult) -> dict:  # fmt: skip
    by_backend: dict[str, dict] = {}
    for f in flows:
        by_backend.setdefault(f.backend, {}).update(
            payments=f.payments, seconds=round(f.seconds, 3),
            payments_per_s=round(f.payments_per_s, 1),
            ratio_to_raw_hop=(round(f.payments_per_s / raw.messages_per_s, 3)
                              if raw.messages_per_s else None),
            processes={p.label: {"peak_rss_mib": round(p.peak_rss_bytes / 2**20, 1),
                                 "cpu_s_per_1000_payments": round(p.cpu_s * 1000 / f.payments, 3)}
                       for p in f.processes},
        )  # fmt: skip
    for lat in latencies:
        by_backend.setdefault(lat.backend, {}).update(
            latency_offered_per_s=lat.offered_per_s,
            latency_achieved_publish_per_s=round(lat.achieved_publish_per_s, 1),
            latency_payments=lat.payments,
            latency_p50_s=round(lat.p50_s, 4), latency_p95_s=round(lat.p95_s, 4),
            latency_p99_s=round(lat.p99_s, 4), latency_max_s=round(lat.max_s, 4),
        )  # fmt: skip
    return {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "partitions": partitions,
        "raw_hop_messages_per_s": round(raw.messages_per_s, 1),
        "raw_hop": asdict(raw) | {"messages_per_s": round(raw.messages_per_s, 1)},
        "signature_verification": {
            "payments": verification.payments,
            "cpu_s_per_1000_payments": round(verification.cpu_s_per_1000_payments, 4),
        },
        "backends": by_backend,
    }  # fmt: skip


def _print(console: Console, report: dict) -> None:
    table = Table(
        title=f"Sakk benchmark ({report['machine']['cpus']} CPUs, "
        f"{report['partitions']} partitions, consumers in separate processes)"
    )
    table.add_column("measure")
    backends = list(report["backends"])
    for b in backends:
        table.add_column(b, justify="right")
    rows = [
        ("full flow payments/s", "payments_per_s", "{:,.0f}"),
        ("ratio to raw hop", "ratio_to_raw_hop", "{:.2f}"),
        ("offered rate (payments/s)", "latency_offered_per_s", "{:,}"),
        ("achieved publish rate", "latency_achieved_publish_per_s", "{:,.0f}"),
        ("latency p50 (s)", "latency_p50_s", "{:.3f}"),
        ("latency p95 (s)", "latency_p95_s", "{:.3f}"),
        ("latency p99 (s)", "latency_p99_s", "{:.3f}"),
        ("latency max (s)", "latency_max_s", "{:.3f}"),
    ]
    for title, key, fmt in rows:
        table.add_row(title, *[_fmt(report["backends"][b].get(key), fmt) for b in backends])
    for stage in ("validator-1", "settlement-1", "notification-1"):
        table.add_row(
            f"{stage} peak RSS (MiB)",
            *[
                _fmt(
                    report["backends"][b].get("processes", {}).get(stage, {}).get("peak_rss_mib"),
                    "{:.0f}",
                )
                for b in backends
            ],
        )
        table.add_row(
            f"{stage} CPU s / 1,000 payments",
            *[
                _fmt(
                    report["backends"][b]
                    .get("processes", {})
                    .get(stage, {})
                    .get("cpu_s_per_1000_payments"),
                    "{:.3f}",
                )
                for b in backends
            ],
        )
    console.print(table)
    console.print(
        f"raw hop (kafka-python consume + produce + commit, no work): "
        f"{report['raw_hop_messages_per_s']:,.0f} messages/s"
    )
    console.print(_verification_line(report))


def _verification_line(report: dict) -> str:  # type: ignore[type-arg]
    """The validator's signature checks alone, and their share of its whole CPU."""
    per_1000 = report["signature_verification"]["cpu_s_per_1000_payments"]
    shares = []
    for backend, figures in report["backends"].items():
        whole = figures.get("processes", {}).get("validator-1", {}).get("cpu_s_per_1000_payments")
        if whole:
            shares.append(f"{per_1000 / whole:.0%} of the validator's CPU on {backend}")
    share = f" ({', '.join(shares)})" if shares else ""
    return (
        f"signature verification (Ed25519, KeyRing.verify): {per_1000:.3f} CPU s "
        f"per 1,000 payments{share}"
    )


def _fmt(value: object, fmt: str) -> str:
    return "—" if value is None else fmt.format(value)
