"""``sakk bench``: the full flow, its latency curve and knee, beside the topology's ceilings."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import psycopg
from rich.console import Console

from engine.config import Settings
from engine.ledger.reference import read_file
from sakk.app import kafka_for
from sakk.cli import cli
from tooling.bench.checks import BenchmarkCheckError
from tooling.bench.flow import (
    MAX_INSTANCES,
    MAX_RATE_PER_S,
    MAX_RATES,
    MAX_SESSION_PAYMENTS,
    SessionPlan,
    run_session,
    scratch_dir,
)
from tooling.bench.knee import MAX_KNEE_STEPS
from tooling.bench.null_pipeline import NullPipelineResult, measure_null_pipeline
from tooling.bench.raw_hop import RawHopResult, measure_raw_hop
from tooling.bench.report import BackendRuns, build_report, print_report
from tooling.bench.signatures import SignatureCheckError, measure_verification

POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PAYMENT_MESSAGE_BYTES = 210  # a PaymentInitiated in single-object Avro is about this size
DEFAULT_CURVE_RATES = "250,500,1000,2000"
MAX_RAW_MESSAGES = 10_000_000
MIN_REPORT_WIDTH = 110  # the tables' width when output is not a terminal (rich's default: 80)
BACKENDS = ("sqlite", "postgresql")
SCALE_OUT_BACKEND = "postgresql"  # SQLite has one writer at a time: nothing to scale out


@cli.command()
@click.option(
    "--payments",
    default=40_000,
    show_default=True,
    type=click.IntRange(1, MAX_SESSION_PAYMENTS),
    help="Payments per throughput run (uniform, skewed and scale-out alike).",
)
@click.option(
    "--raw-messages",
    default=60_000,
    show_default=True,
    type=click.IntRange(1, MAX_RAW_MESSAGES),
    help="Messages for the raw hop.",
)
@click.option(
    "--null-messages",
    default=60_000,
    show_default=True,
    type=click.IntRange(1, MAX_RAW_MESSAGES),
    help="Messages through the null pipeline (three forwarding processes, no work).",
)
@click.option(
    "--curve-rates",
    default=DEFAULT_CURVE_RATES,
    show_default=True,
    help="Offered payments/s of the latency curve, one after another on one fleet.",
)
@click.option(
    "--curve-seconds",
    default=10,
    show_default=True,
    type=click.IntRange(1, 3_600),
    help="How long each rate is offered (the skewed latency run's too).",
)
@click.option("--skip-curve", is_flag=True, help="No latency curve (and no knee search).")
@click.option(
    "--knee-steps",
    default=3,
    show_default=True,
    type=click.IntRange(0, MAX_KNEE_STEPS),
    help="Rates probed between the curve's last p99 under 1 s and its first over, each "
    "offered for --curve-seconds (none starts after 180 s of search).",
)
@click.option(
    "--skew-rate",
    default=1_000,
    show_default=True,
    type=click.IntRange(1, MAX_RATE_PER_S),
    help="Offered payments/s of the skewed latency run; the uniform curve gets this rate "
    "too if it lacks it, so the two p99s sit side by side.",
)
@click.option("--skip-skew", is_flag=True, help="No hot-account (skewed) run.")
@click.option(
    "--scale-out/--no-scale-out",
    default=True,
    show_default=True,
    help="On PostgreSQL, also run several instances of each stage in one consumer group.",
)
@click.option(
    "--scale-out-instances",
    default=2,
    show_default=True,
    type=click.IntRange(2, MAX_INSTANCES),
    help="Instances per stage in the scale-out run (at most the topics' partitions).",
)
@click.option("--backends", default=",".join(BACKENDS), show_default=True)
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
def bench(settings: Settings, **given: Any) -> None:
    """Measure the raw hop and the null pipeline, then per backend the full flow and its curve.

    Also, unless skipped: a hot-account run (70% of payments from one bank's customers to
    one merchant account, every e-government payment to the vignette's account) beside
    the uniform one, and on PostgreSQL the scale-out (several instances of each stage in
    one consumer group) beside one instance, its ledger also put through the auditor's
    hash-chain verification. A run whose counts or ledger are wrong fails: no figure.

    The null pipeline (three processes chained as the stages, forwarding with the same
    clients and no work) is the topology's ceiling; the knee is the highest offered rate
    whose p99 stays under 1 s, from the curve and a few probes between its rates.

    Every payment is signed as its payer's bank, and the simulated banks' keys are
    registered in each run's ledger; the validator's signature verification is also
    timed on its own (CPU per 1,000 payments).
    """
    options = BenchOptions(**given)
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, MIN_REPORT_WIDTH))
    chosen = _backends(options.backends)
    scale_out_instances = _scale_out_instances(settings, options, chosen, console)
    rates = _uniform_rates(
        options.curve_rates, options.skip_curve, None if options.skip_skew else options.skew_rate
    )
    try:
        plans = _plans(options.payments, rates, options.curve_seconds, options.skip_skew,
                       options.skew_rate, scale_out_instances,
                       0 if options.skip_curve else options.knee_steps)  # fmt: skip
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    summary = {"payments": options.payments, "curve_rates": rates,
               "curve_seconds": options.curve_seconds,
               "knee_steps": plans["uniform"].knee_steps,
               "skew_rate": None if options.skip_skew else options.skew_rate,
               "scale_out_instances": scale_out_instances or None}  # fmt: skip
    report = _measure(settings, options, chosen, plans, console, summary)
    print_report(console, report)
    path = options.output or settings.data_dir / "bench" / "latest.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"written {path}")


@dataclass(frozen=True)
class BenchOptions:
    """The command's options, as given (bounds checked by click)."""

    payments: int
    raw_messages: int
    null_messages: int
    curve_rates: str
    curve_seconds: int
    skip_curve: bool
    knee_steps: int
    skew_rate: int
    skip_skew: bool
    scale_out: bool
    scale_out_instances: int
    backends: str
    postgres_admin_url: str
    output: Path | None


def _scale_out_instances(
    settings: Settings, options: BenchOptions, chosen: list[str], console: Console
) -> int:
    """Instances per stage of the scale-out run; 0 for none."""
    if not options.scale_out:
        return 0
    if SCALE_OUT_BACKEND not in chosen:
        console.print(f"[dim]… scale-out runs on {SCALE_OUT_BACKEND} only: not in --backends[/]")
        return 0
    if options.scale_out_instances > settings.topic_partitions:
        raise click.UsageError(
            f"--scale-out-instances {options.scale_out_instances} exceeds the topics' "
            f"{settings.topic_partitions} partitions (SAKK_TOPIC_PARTITIONS): extra instances idle"
        )
    return options.scale_out_instances


def _measure(
    settings: Settings,
    options: BenchOptions,
    chosen: list[str],
    plans: dict[str, SessionPlan],
    console: Console,
    summary: dict[str, Any],
) -> dict[str, Any]:
    """Every measurement, checked; the report. A failed check keeps the run directory."""
    work = scratch_dir(settings.data_dir / "bench")
    keep = False  # the run directory of a run that failed its checks: its consumers' logs
    try:
        with kafka_for(settings) as live:
            say = lambda text: console.print(f"[dim]… {text}[/]")  # noqa: E731
            raw, null = _ceilings(live, options, work, say)
            runs = {
                backend: _backend_runs(live, backend, plans, work, options.postgres_admin_url, say)
                for backend in chosen
            }
        verification = measure_verification(
            read_file(settings.reference_file), settings.schemas_dir, settings.topic("initiated")
        )
    except (BenchmarkCheckError, SignatureCheckError) as exc:
        keep = True
        raise click.ClickException(
            f"benchmark run failed its correctness check: {exc} (run directory kept: {work})"
        ) from exc
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    return build_report(raw, runs, live.topic_partitions, verification, summary, null)


def _ceilings(
    live: Settings, options: BenchOptions, work: Path, say: Callable[[str], None]
) -> tuple[RawHopResult, NullPipelineResult]:
    """The raw hop and the null pipeline, each on fresh topics."""
    size = PAYMENT_MESSAGE_BYTES
    say(f"raw hop: {options.raw_messages:,} messages of {size} bytes, "
        f"{live.topic_partitions} partitions")  # fmt: skip
    raw = measure_raw_hop(
        live.replace(topic_prefix=f"raw{uuid.uuid4().hex[:6]}"), options.raw_messages, size
    )
    say(f"null pipeline: {options.null_messages:,} messages of {size} bytes through 3 processes")
    prefix = f"null{uuid.uuid4().hex[:6]}"
    null = measure_null_pipeline(
        live.replace(topic_prefix=prefix, consumer_group_prefix=prefix),
        options.null_messages,
        size,
        work / "null-pipeline",
    )
    return raw, null


def _backend_runs(
    live: Settings,
    backend: str,
    plans: dict[str, SessionPlan],
    work: Path,
    admin_url: str,
    say: Callable[[str], None],
) -> BackendRuns:
    """Each planned session on ``backend``, each on a fresh ledger."""
    done = {}
    for part, plan in plans.items():
        if part == "scale_out" and backend != SCALE_OUT_BACKEND:
            continue
        with _database(backend, work, admin_url) as url:
            done[part] = run_session(live, backend, url, plan, work, say)
    return BackendRuns(**done)


def _plans(
    payments: int,
    rates: list[int],
    rate_seconds: int,
    skip_skew: bool,
    skew_rate: int,
    scale_out_instances: int,
    knee_steps: int = 0,
) -> dict[str, SessionPlan]:
    """The sessions each backend runs, by report part (``scale_out`` on PostgreSQL only).

    Every session's ledger also goes through the auditor's hash-chain verification (a few
    seconds): above all the scale-out's, where two settlement instances append at once.
    """
    plans = {
        "uniform": SessionPlan(
            throughput_payments=payments,
            rates_per_s=tuple(rates),
            rate_seconds=rate_seconds,
            verify_chain=True,
            knee_steps=knee_steps if rates else 0,
        )
    }
    if not skip_skew:
        plans["skew"] = SessionPlan(
            profile="skew",
            throughput_payments=payments,
            rates_per_s=(skew_rate,),
            rate_seconds=rate_seconds,
            verify_chain=True,
        )
    if scale_out_instances:
        plans["scale_out"] = SessionPlan(
            throughput_payments=payments, instances=scale_out_instances, verify_chain=True
        )
    return plans


def _uniform_rates(curve_rates: str, skip_curve: bool, skew_rate: int | None) -> list[int]:
    """The uniform run's offered rates: the curve's, and the skewed run's for its comparison."""
    rates = [] if skip_curve else _rates(curve_rates)
    if skew_rate is not None and skew_rate not in rates:
        rates.append(skew_rate)
    return rates


def _backends(text: str) -> list[str]:
    chosen = [b.strip() for b in text.split(",") if b.strip()]
    unknown = set(chosen) - set(BACKENDS)
    if unknown or not chosen:
        raise click.UsageError(f"unknown backends {sorted(unknown)}: use sqlite and/or postgresql")
    return chosen


def _rates(text: str) -> list[int]:
    """Distinct offered rates, in the order given."""
    try:
        given = [int(r) for r in text.split(",") if r.strip()]
    except ValueError as exc:
        raise click.BadParameter(
            f"{text!r}: payments/s as integers, e.g. 250,500", param_hint="--curve-rates"
        ) from exc
    if not given or len(given) > MAX_RATES or not all(0 < r <= MAX_RATE_PER_S for r in given):
        raise click.BadParameter(
            f"1 to {MAX_RATES} rates, each in [1, {MAX_RATE_PER_S}] payments/s",
            param_hint="--curve-rates",
        )
    return list(dict.fromkeys(given))


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
