"""``sakk demo``: the whole flow on the embedded broker and a fresh SQLite ledger, summarised."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import Connection, Engine, func, select

from engine.app import STAGE_NAMES, kafka_for, ledger_engine
from engine.cli import cli
from engine.config import Settings
from engine.kafka.client import create_topics
from engine.kafka.terminator import stunnel_missing
from engine.kafka.tls_broker import EmbeddedTlsBroker
from engine.ledger.checks import FlowCounts, check_ledger, expected_notifications, flow_counts
from engine.ledger.database import read_only
from engine.ledger.models import DeadLetter
from engine.ledger.reference import load_reference_data, read_file
from engine.ledger.reports import channel_summary, net_positions, processing_window, reason_summary
from engine.money import format_minor
from engine.pipeline.dead_letters import SECURITY_KIND
from engine.reasons import Reason
from engine.supervisor import Fleet

DRAIN_TIMEOUT_S = 300.0
POLL_INTERVAL_S = 0.5


@dataclass(frozen=True)
class DemoResult:
    published: int
    counts: FlowCounts
    seconds: float
    ledger_ok: bool
    violations: list[str]
    signed: int = 0  # messages published with a bank's signature (forgeries included)
    forged: int = 0  # forged or unsigned messages among them, which must all be refused
    refused: int = 0  # security dead letters in the ledger

    @property
    def adds_up(self) -> bool:
        c = self.counts
        return self.published == c.terminal + c.dead_lettered

    @property
    def refusals_as_expected(self) -> bool:
        """Every forgery refused, and no genuine payment."""
        return self.refused == self.forged


@cli.command()
@click.option("--payments", default=5000, show_default=True, help="Messages to publish.")
@click.option("--seed", default=2026, show_default=True)
@click.option(
    "--rate", type=int, default=None, help="Offered payments/s (default: as fast as possible)."
)
@click.option(
    "--tls",
    is_flag=True,
    help="Every Kafka connection over mutual TLS: the embedded broker behind stunnel, "
    "with certificates made for this run.",
)
@click.pass_obj
def demo(settings: Settings, payments: int, seed: int, rate: int | None, tls: bool) -> None:
    """Start everything, publish simulated payments from every channel, summarise, check."""
    console = Console()
    if console.width < 100:  # a pipe or a narrow terminal: keep the tables readable
        console = Console(width=100)
    run_dir = settings.data_dir / "demo"
    _fresh_dir(run_dir)
    settings = settings.replace(
        database_url=settings.database_url or f"sqlite:///{run_dir / 'ledger.db'}",
        notify_log_path=run_dir / "notifications.jsonl",
        data_dir=run_dir,
    )
    with _transport(settings, tls, console) as settings:
        result = run_demo(settings, payments, seed, rate, console)
    _print_summary(console, settings, result)
    if not (result.adds_up and result.ledger_ok and result.refusals_as_expected):
        raise SystemExit(1)


@contextmanager
def _transport(settings: Settings, tls: bool, console: Console) -> Iterator[Settings]:
    """``settings`` as given, or (``--tls``) pointed at the embedded broker's TLS terminator."""
    if not tls:
        yield settings
        return
    if not settings.uses_embedded_broker:
        raise click.UsageError(
            "--tls runs the embedded broker behind a TLS terminator; unset "
            "SAKK_KAFKA_BOOTSTRAP_SERVERS (for a broker of your own, set "
            "SAKK_KAFKA_SECURITY_PROTOCOL=SSL and the SAKK_KAFKA_SSL_* files instead)"
        )
    reason = stunnel_missing()
    if reason:
        raise click.ClickException(f"--tls needs a TLS terminator: {reason}")
    with EmbeddedTlsBroker(settings.data_dir / "tls") as broker:
        console.print(
            f"[bold]mutual TLS[/]: stunnel on {broker.bootstrap_servers} in front of the broker, "
            f"CA {broker.files.ca_file}, client certificate CN=sakk"
        )
        yield broker.settings_for(settings)


def _fresh_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    for child in path.iterdir():
        if child.is_file():
            child.unlink()


def run_demo(
    settings: Settings, payments: int, seed: int, rate: int | None, console: Console
) -> DemoResult:
    from tooling.simulator import register_simulated_keys, simulate, simulation_signers

    with kafka_for(settings) as live:
        console.print(
            f"[bold]Sakk demo[/]: broker {live.kafka_bootstrap_servers}, ledger {live.ledger_url}"
        )
        create_topics(live)
        engine = ledger_engine(live, migrate=True)
        report = load_reference_data(engine, read_file(live.reference_file))
        console.print(f"reference data: {report.banks} banks, {report.accounts_created} accounts")
        signers = simulation_signers(read_file(live.reference_file), seed)
        registered = register_simulated_keys(live, signers)
        console.print(
            f"signing keys: one per bank ({len(signers.banks)}), generated for the run; "
            f"{registered} public keys registered"
        )
        fleet = Fleet(live, live.data_dir / "logs")
        for stage in STAGE_NAMES:
            fleet.start(stage)
        try:
            started = time.monotonic()
            with _progress(console) as progress:
                task = progress.add_task("publishing", total=payments)
                sim = simulate(
                    live,
                    payments=payments,
                    seed=seed,
                    rate_per_s=rate,
                    progress=lambda n: progress.update(task, completed=n),
                    reference_path=live.reference_file,
                    register_keys=False,  # registered above
                )
                drain = progress.add_task("reaching a terminal state", total=sim.published)
                counts = _wait_for_drain(
                    read_only(engine),
                    sim.published,
                    fleet,
                    lambda done: progress.update(drain, completed=done),
                )
            seconds = time.monotonic() - started
        finally:
            fleet.stop()
        with engine.connect() as conn:
            check = check_ledger(conn)
            refused = security_refusals(conn)
        return DemoResult(
            sim.published, counts, seconds, check.ok, check.violations, sim.signed, sim.forged,
            refused,
        )  # fmt: skip


def security_refusals(conn: Connection) -> int:
    """Messages the validator refused as a security matter (bad or missing signature)."""
    query = select(func.count()).select_from(DeadLetter).where(DeadLetter.kind == SECURITY_KIND)
    return int(conn.execute(query).scalar_one())


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def _wait_for_drain(engine: Engine, published: int, fleet: Fleet, on_progress) -> FlowCounts:  # type: ignore[no-untyped-def]
    """Until every message is terminal or dead-lettered and every bank has been told."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while True:
        with engine.connect() as conn:
            counts = flow_counts(conn)
            expected, finished = expected_notifications(conn)
        on_progress(counts.terminal + counts.dead_lettered)
        if counts.terminal + counts.dead_lettered >= published and finished >= expected:
            return counts
        dead = fleet.check_alive()
        if dead:
            raise click.ClickException(f"consumer exited: {dead}; see {fleet.log_dir}")
        if time.monotonic() > deadline:
            return counts
        time.sleep(POLL_INTERVAL_S)


def _amount(amount_minor: int, currency: str) -> str:
    return format_minor(amount_minor, currency).rsplit(" ", 1)[0]


def _print_summary(console: Console, settings: Settings, result: DemoResult) -> None:
    engine = ledger_engine(settings)
    with engine.connect() as conn:
        channels = channel_summary(conn)
        reasons = reason_summary(conn)
        positions = net_positions(conn)
    table = Table(title="Payments by channel")
    for col in (
        "channel",
        "cur",
        "payments",
        "settled",
        "rejected",
        "failed",
        "settled amount",
        "fees",
    ):
        table.add_column(col, justify="left" if col in ("channel", "cur") else "right")
    for line in channels:
        table.add_row(
            line.channel,
            line.currency,
            f"{line.payments:,}",
            f"{line.settled:,}",
            f"{line.rejected:,}",
            f"{line.failed:,}",
            _amount(line.settled_amount_minor, line.currency),
            _amount(line.fees_minor, line.currency),
        )
    console.print(table)
    why = Table(title="Rejected and failed, by reason")
    for col in ("outcome", "code", "reason", "payments"):
        why.add_column(col, justify="right" if col == "payments" else "left")
    for state, code, count in reasons:
        title = Reason(code).label if code in Reason.__members__ else ""
        why.add_row(state.lower(), code, title, f"{count:,}")
    console.print(why)
    banks = Table(title="Interbank net positions (positive: the switch owes the bank)")
    for col in ("bank", "name", "cur", "paid out", "paid in", "net position"):
        banks.add_column(col, justify="left" if col in ("bank", "name", "cur") else "right")
    for pos in positions:
        banks.add_row(
            pos.bank_code,
            pos.bank_name[:24],
            pos.currency,
            _amount(pos.gross_debits_minor, pos.currency),
            _amount(pos.gross_credits_minor, pos.currency),
            _amount(pos.net_minor, pos.currency),
        )
    console.print(banks)
    c = result.counts
    first, last = processing_window(engine)
    busy_s = (last - first).total_seconds() if first and last else 0.0
    rate = result.published / busy_s if busy_s > 0 else 0.0
    console.print(
        f"{result.published:,} messages handled in {result.seconds:.1f} s from the first "
        f"publish (consumer group joins included); {rate:,.0f} payments/s from the "
        f"first validation to the last notification"
    )
    mark = "[green]OK[/]" if result.adds_up else "[red]MISMATCH[/]"
    console.print(
        f"{mark} published {result.published:,} = settled {c.settled:,} + rejected "
        f"{c.rejected:,} + failed {c.failed:,} + dead-lettered {c.dead_lettered:,}"
    )
    mark = "[green]OK[/]" if result.refusals_as_expected else "[red]MISMATCH[/]"
    console.print(
        f"{mark} signed {result.signed:,}, refused for security {result.refused:,} "
        f"(forged or unsigned published: {result.forged:,})"
    )
    if result.ledger_ok:
        console.print(
            "[green]OK[/] ledger balances: every posting sums to zero, every balance "
            "equals its entries, money is conserved"
        )
    else:
        console.print("[red]LEDGER VIOLATIONS[/]")
        for v in result.violations[:20]:
            console.print(f"  {v}")
