"""``sakk demo``: the whole flow on the embedded broker and a fresh SQLite ledger, summarised.

The traffic is the workload's demo profile (``tooling.workload.profiles.DEMO``): the
uniform mix with the lifecycle (``tooling.workload.traffic``): card
authorizations captured, partly captured, voided or left to expire within the run,
airline refunds and interbank returns. The demo waits for every step (the expiries
too), then checks that each payment's state and each step's outcome is the one the
traffic expected, and the lifecycle's invariants (``check_lifecycle``).
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import Connection, Engine, case, func, select

from engine.audit.window_lifecycle import Transition
from engine.audit.window_settlement import ConfirmResult, parties_of, settle_as_instructed
from engine.audit.windows import all_window_reports, close_window
from engine.config import Settings
from engine.domain import STEPS, Party, StepOutcome
from engine.domain import StepKind as K
from engine.domain.steps import HOLD_STEPS, MONEY_BACK, REQUESTED_STEPS
from engine.events import SWITCH
from engine.kafka.client import create_topics
from engine.kafka.terminator import stunnel_missing
from engine.kafka.tls_broker import EmbeddedTlsBroker
from engine.ledger.checks import FlowCounts, check_ledger, check_lifecycle
from engine.ledger.models import (
    DeadLetter,
    Payment,
    PaymentStep,
)
from engine.ledger.reference import load_reference_data, read_file
from engine.money import format_minor
from engine.pipeline.dead_letters import SECURITY_KIND
from engine.read.exceptions import WindowError
from engine.read.reports import (
    ChannelLine,
    NetPosition,
    channel_summary,
    net_positions,
    processing_window,
    reason_summary,
)
from engine.reasons import Reason
from engine.supervisor import Fleet
from sakk.app import STAGE_NAMES, TOPOLOGY, kafka_for, ledger_engine
from sakk.cli import cli
from sakk.cli.demo_liquidity import REFUSED, Pressed, press_on_liquidity
from sakk.cli.positions import percent, position_lines
from tooling.drain import Drain, DrainState, wait_drained
from tooling.workload.profiles import DEMO
from tooling.workload.traffic import (
    SimulationReport,
    register_simulated_keys,
    simulate,
    simulation_signers,
)

DRAIN_TIMEOUT_S = 300.0
POLL_INTERVAL_S = 0.5
PRESS_POLL_S = 0.1  # a handful of payments: answered within a batch or two
# The states the steps banks (and the expiry scheduler) ask for lead to.
LIFECYCLE_STATES = tuple(STEPS[k].target for k in REQUESTED_STEPS)
# Steps on a hold a bank may ask for (the switch's expiries aside), and money back.
BANK_HOLD_STEPS = tuple(k for k in HOLD_STEPS if Party.SWITCH not in STEPS[k].who_may_ask)


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
    bank_steps: int = 0  # steps the banks asked for, recorded (applied or refused)
    # What the traffic expected and what the ledger holds: payments per lifecycle state
    # ("captured", ...), steps per kind and outcome ("CAPTURE applied", "REFUND refused AG01").
    expected_states: Counter[str] = field(default_factory=Counter)
    states: Counter[str] = field(default_factory=Counter)
    expected_steps: Counter[str] = field(default_factory=Counter)
    steps: Counter[str] = field(default_factory=Counter)
    lifecycle_violations: list[str] = field(default_factory=list)
    settled_window: ConfirmResult | None = None  # one window settled end to end
    pressed: Pressed | None = None  # one bank refused at its liquidity, then funded
    # Each bank's line of ``sakk settlement positions`` once the traffic is done, before
    # the window is settled (settling it brings every position back to zero).
    limits: list[dict[str, Any]] = field(default_factory=list)

    @property
    def adds_up(self) -> bool:
        c = self.counts
        return self.published == c.terminal + c.dead_lettered + self.bank_steps

    @property
    def lifecycle_as_expected(self) -> bool:
        return (
            self.states == self.expected_states
            and self.steps == self.expected_steps
            and not self.lifecycle_violations
        )

    @property
    def ok(self) -> bool:
        return (
            self.adds_up and self.ledger_ok and self.refusals_as_expected
            and self.lifecycle_as_expected
            and (self.settled_window is None or self.settled_window.ok)
            and (self.pressed is None or self.pressed.ok)
        )  # fmt: skip

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
    within_limits = _print_summary(console, settings, result)
    _print_console_how_to(console, settings)
    if not (result.ok and within_limits):
        raise SystemExit(1)


def _print_console_how_to(console: Console, settings: Settings) -> None:
    """How to look at this run's ledger in the console (the next demo starts it afresh)."""
    sakk = sys.argv[0] if Path(sys.argv[0]).name == "sakk" else "sakk"
    url = settings.ledger_url
    console.print(
        "\n[bold]The console[/] on this ledger: make yourself an operator (the password is "
        "asked for, 12 characters at least), then serve it and open http://127.0.0.1:8600/",
        highlight=False,
    )
    for line in (
        f"{sakk} users add admin --role operator --database-url {url}",
        f"{sakk} console --database-url {url}",
    ):
        console.print(f"  {line}", highlight=False, soft_wrap=True, markup=False)


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
    with kafka_for(settings) as live:
        console.print(
            f"[bold]Sakk demo[/]: broker {live.kafka_bootstrap_servers}, ledger {live.ledger_url}"
        )
        engine = _set_up(live, seed, console)
        fleet = Fleet(live, live.data_dir / "logs", TOPOLOGY)
        for stage in STAGE_NAMES:
            fleet.start(stage)
        try:
            started = time.monotonic()
            with _progress(console) as progress:
                sim, counts = _traffic(live, engine, fleet, (payments, seed, rate), progress)
            pressed, counts = _press(live, engine, fleet, sim, seed)
            seconds = time.monotonic() - started
        finally:
            fleet.stop()
        limits = position_lines(engine)
        result = _result(engine, sim, counts, seconds, settle_one_window(live, engine), pressed)
        return replace(result, limits=limits)


def _press(
    live: Settings, engine: Engine, fleet: Fleet, sim: SimulationReport, seed: int
) -> tuple[Pressed, FlowCounts]:
    """One bank pressed on its liquidity (``sakk.cli.demo_liquidity``), then drained."""
    reference = read_file(live.reference_file)
    sent = [0]
    counts: list[FlowCounts] = []

    def drain(more: int) -> None:
        sent[0] += more
        counts.append(_wait_for_drain(engine, sim, fleet, lambda _: None, sent[0], PRESS_POLL_S))

    pressed = press_on_liquidity(
        live, engine, reference, simulation_signers(reference, seed), drain
    )
    return pressed, counts[-1]


def _set_up(live: Settings, seed: int, console: Console) -> Engine:
    """Topics, the migrated ledger, reference data, and one signing key per bank."""
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
    return engine


def _traffic(
    live: Settings, engine: Engine, fleet: Fleet, run: tuple[int, int, int | None],
    progress: Progress,
) -> tuple[SimulationReport, FlowCounts]:  # fmt: skip
    """Publish the demo's seeded traffic, then wait until every message has its answer."""
    payments, seed, rate = run
    task = progress.add_task("publishing", total=payments)
    sim = simulate(
        live, payments=payments, seed=seed, rate_per_s=rate,
        progress=lambda n: progress.update(task, completed=n),
        reference_path=live.reference_file,
        register_keys=False,  # registered by _set_up
        profile=DEMO.mix, lifecycle=DEMO.lifecycle,
    )  # fmt: skip
    expected = sim.published + sim.expiries  # the switch's expiries are steps too
    drain = progress.add_task("reaching a terminal state", total=expected)
    counts = _wait_for_drain(
        engine, sim, fleet, lambda done: progress.update(drain, completed=done)
    )
    return sim, counts


def _result(
    engine: Engine,
    sim: SimulationReport,
    counts: FlowCounts,
    seconds: float,
    settled_window: ConfirmResult | None = None,
    pressed: Pressed | None = None,
) -> DemoResult:
    """What the demo found in the ledger once the traffic has drained."""
    with engine.connect() as conn:
        check = check_ledger(conn)
        refused = security_refusals(conn)
        steps, bank_steps = recorded_steps(conn)
        states = lifecycle_states(conn)
        lifecycle = check_lifecycle(conn)
    expected_states = Counter({
        s.lower(): sim.by_expected[s.lower()] for s in LIFECYCLE_STATES
        if sim.by_expected[s.lower()]
    })  # fmt: skip
    return DemoResult(
        sim.published + (pressed.published if pressed else 0), counts, seconds, check.ok,
        check.violations, sim.signed + (pressed.published if pressed else 0), sim.forged,
        refused, bank_steps, expected_states, states, Counter(sim.by_step), steps,
        lifecycle.violations, settled_window, pressed,
    )  # fmt: skip


def settle_one_window(settings: Settings, engine: Engine) -> ConfirmResult | None:
    """The latest window with interbank postings closed, settled to a pacs.009 and
    confirmed by a settlement bank that did as instructed (played by the demo)."""
    with engine.connect() as conn:
        reports = [r for r in all_window_reports(conn) if r.lines]
        parties = parties_of(
            conn,
            settings.settlement_switch_code,
            settings.settlement_bank_code,
            settings.settlement_clearing_system,
        )
    if not reports:
        return None
    window, now = reports[-1].window, datetime.now(UTC)
    try:
        close_window(engine, window, now, early=True, details=Transition("demo", requested_at=now))
        return settle_as_instructed(engine, window.label, parties, "demo", now)
    except WindowError:  # every net zero: nothing to settle, nothing to show
        return None


def security_refusals(conn: Connection) -> int:
    """Messages the validator refused as a security matter (bad or missing signature)."""
    query = select(func.count()).select_from(DeadLetter).where(DeadLetter.kind == SECURITY_KIND)
    return int(conn.execute(query).scalar_one())


def recorded_steps(conn: Connection) -> tuple[Counter[str], int]:
    """The ledger's steps per kind and outcome ("CAPTURE applied", "REFUND refused AG01"),
    and how many of them banks asked for (the others are the switch's expiries)."""
    st = PaymentStep.__table__
    rows = conn.execute(
        select(st.c.kind, st.c.outcome, st.c.reason_code, st.c.sender_bank == SWITCH, func.count())
        .group_by(st.c.kind, st.c.outcome, st.c.reason_code, st.c.sender_bank == SWITCH)
    ).all()  # fmt: skip
    steps: Counter[str] = Counter()
    by_banks = 0
    for kind, outcome, reason, by_switch, count in rows:
        refused = reason if outcome == StepOutcome.REFUSED else None  # a return has one too
        steps[" ".join(filter(None, (kind, outcome.lower(), refused)))] += count
        by_banks += 0 if by_switch else count
    return steps, by_banks


def lifecycle_states(conn: Connection) -> Counter[str]:
    """Payments per lifecycle state ("captured", "voided", ...)."""
    p = Payment.__table__
    rows = conn.execute(
        select(p.c.state, func.count()).where(p.c.state.in_(LIFECYCLE_STATES)).group_by(p.c.state)
    )
    return Counter({state.lower(): int(count) for state, count in rows})


@dataclass(frozen=True)
class LifecycleLine:
    channel: str
    currency: str
    authorized: int  # holds placed
    captured: int  # capture steps applied
    captured_minor: int
    voided: int
    expired: int
    refused_on_holds: int  # captures and voids refused
    refunded: int  # refund steps applied
    refunded_minor: int
    returned: int
    returned_minor: int
    refused_back: int  # refunds and returns refused


def lifecycle_summary(conn: Connection) -> list[LifecycleLine]:
    """Per channel: holds placed, and the steps applied (with amounts) and refused."""
    p, st = Payment.__table__, PaymentStep.__table__
    answered = p.c.state.not_in(("VALIDATED", "REJECTED", "FAILED"))
    held: dict[tuple[str, str], int] = {
        (channel, currency): int(n)
        for channel, currency, n in conn.execute(
            select(p.c.channel, p.c.currency, func.count())
            .where(p.c.intent == "AUTHORIZATION", answered)
            .group_by(p.c.channel, p.c.currency)
        )
    }
    applied = st.c.outcome == StepOutcome.APPLIED
    refused = st.c.outcome == StepOutcome.REFUSED

    def count(outcome, *kinds: str):  # type: ignore[no-untyped-def]
        return func.sum(case((outcome & st.c.kind.in_(kinds), 1), else_=0))

    def amount(kind: str):  # type: ignore[no-untyped-def]
        return func.sum(case((applied & (st.c.kind == kind), st.c.amount_minor), else_=0))

    rows = conn.execute(
        select(
            p.c.channel, p.c.currency, count(applied, K.CAPTURE), amount(K.CAPTURE),
            count(applied, K.VOID), count(applied, K.EXPIRE), count(refused, *BANK_HOLD_STEPS),
            count(applied, K.REFUND), amount(K.REFUND), count(applied, K.RETURN),
            amount(K.RETURN), count(refused, *MONEY_BACK),
        )
        .join(p, p.c.payment_id == st.c.payment_id)
        .group_by(p.c.channel, p.c.currency)
    )  # fmt: skip
    steps = {(r[0], r[1]): [int(v or 0) for v in r[2:]] for r in rows}
    return [
        LifecycleLine(channel, currency, held.get((channel, currency), 0),
                      *steps.get((channel, currency), [0] * 10))
        for channel, currency in sorted(held.keys() | steps.keys())
    ]  # fmt: skip


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def _wait_for_drain(
    engine: Engine,
    sim: SimulationReport,
    fleet: Fleet,
    on_progress: Callable[[int], None],
    more: int = 0,
    poll_s: float = POLL_INTERVAL_S,
) -> FlowCounts:
    """Until every payment (and ``more`` sent since the traffic) is answered or
    dead-lettered, every step (the switch's expiries included) recorded, and every bank
    has been told."""
    steps = sim.steps + sim.expiries  # the switch's expiries are steps too

    def watch(state: DrainState) -> None:
        on_progress(state.finished)
        dead = None if state.done else fleet.check_alive()
        if dead:
            raise click.ClickException(f"consumer exited: {dead}; see {fleet.log_dir}")

    wanted = Drain(published=sim.published - sim.steps + more, steps=steps)
    return wait_drained(engine, wanted, DRAIN_TIMEOUT_S, poll_s, watch).counts


def _amount(amount_minor: int, currency: str) -> str:
    return format_minor(amount_minor, currency).rsplit(" ", 1)[0]


def _print_summary(console: Console, settings: Settings, result: DemoResult) -> bool:
    """The tables and checks; whether every bank is within its cap and its liquidity."""
    engine = ledger_engine(settings)
    with engine.connect() as conn:
        channels = channel_summary(conn)
        reasons = reason_summary(conn)
        lifecycle = lifecycle_summary(conn)
        positions = net_positions(conn)
    _print_channels(console, channels)
    _print_reasons(console, reasons)
    _print_lifecycle(console, lifecycle)
    _print_positions(console, positions)
    _print_checks(console, engine, result, positions)
    _print_pressed(console, result.pressed)
    return _print_liquidity(console, result.limits)


def _print_channels(console: Console, channels: list[ChannelLine]) -> None:
    table = Table(title="Payments by channel")
    columns = ("channel", "cur", "payments", "settled", "rejected", "failed", "settled amount",
               "fees")  # fmt: skip
    for col in columns:
        table.add_column(col, justify="left" if col in ("channel", "cur") else "right")
    for line in channels:
        table.add_row(
            line.channel, line.currency, f"{line.payments:,}", f"{line.settled:,}",
            f"{line.rejected:,}", f"{line.failed:,}",
            _amount(line.settled_amount_minor, line.currency),
            _amount(line.fees_minor, line.currency),
        )  # fmt: skip
    console.print(table)


def _print_reasons(console: Console, reasons: list[tuple[str, str, int]]) -> None:
    why = Table(title="Rejected and failed, by reason")
    for col in ("outcome", "code", "reason", "payments"):
        why.add_column(col, justify="right" if col == "payments" else "left")
    for state, code, count in reasons:
        title = Reason(code).label if code in Reason.__members__ else ""
        why.add_row(state.lower(), code, title, f"{count:,}")
    console.print(why)


def _print_positions(console: Console, positions: list[NetPosition]) -> None:
    banks = Table(
        title="Interbank net positions: payments, captures, refunds, returns "
        "(positive: the switch owes the bank)"
    )
    for col in ("bank", "name", "cur", "paid out", "paid in", "net position"):
        banks.add_column(col, justify="left" if col in ("bank", "name", "cur") else "right")
    for pos in positions:
        banks.add_row(
            pos.bank_code, pos.bank_name[:24], pos.currency,
            _amount(pos.gross_debits_minor, pos.currency),
            _amount(pos.gross_credits_minor, pos.currency),
            _amount(pos.net_minor, pos.currency),
        )  # fmt: skip
    console.print(banks)


def _print_checks(
    console: Console, engine: Engine, result: DemoResult, positions: list[NetPosition]
) -> None:
    c = result.counts
    first, last = processing_window(engine, TOPOLOGY.entry.name)
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
        f"{c.rejected:,} + failed {c.failed:,} + dead-lettered {c.dead_lettered:,} "
        f"+ authorized or stepped since {c.later:,} + steps asked by banks {result.bank_steps:,}"
    )
    _print_lifecycle_check(console, result, positions)
    mark = "[green]OK[/]" if result.refusals_as_expected else "[red]MISMATCH[/]"
    console.print(
        f"{mark} signed {result.signed:,}, refused for security {result.refused:,} "
        f"(forged or unsigned published: {result.forged:,})"
    )
    _print_settled_window(console, result.settled_window)
    if result.ledger_ok:
        console.print(
            "[green]OK[/] ledger balances: every posting sums to zero, every balance "
            "equals its entries, money is conserved"
        )
    else:
        console.print("[red]LEDGER VIOLATIONS[/]")
        for v in result.violations[:20]:
            console.print(f"  {v}")


def _print_settled_window(console: Console, settled: ConfirmResult | None) -> None:
    if settled is None:
        return
    if not settled.ok:
        console.print(
            f"[red]WINDOW NOT SETTLED[/] {settled.label}: " + "; ".join(settled.differences)
        )
        return
    moved = sum(net for net in settled.settled.values() if net > 0)
    currencies = sorted({currency for _, currency in settled.settled})
    console.print(
        f"[green]OK[/] window {settled.label} closed, instructed (pacs.009), confirmed "
        f"(pacs.002) and SETTLED: {len(settled.settled)} banks' nets, "
        f"{_amount(moved, currencies[0]) if len(currencies) == 1 else moved} paid by net debtors"
    )


def _print_lifecycle(console: Console, lines: list[LifecycleLine]) -> None:
    holds = Table(title="Card holds by channel: authorized, then captured, voided or expired")
    for col in ("channel", "cur", "authorized", "captures", "captured", "voided", "expired",
                "refused"):  # fmt: skip
        holds.add_column(col, justify="left" if col in ("channel", "cur") else "right")
    back = Table(title="Money back by channel: refunds and returns by the payee's bank")
    for col in ("channel", "cur", "refunds", "refunded", "returns", "returned", "refused"):
        back.add_column(col, justify="left" if col in ("channel", "cur") else "right")
    for x in lines:
        if x.authorized or x.captured or x.voided or x.expired or x.refused_on_holds:
            holds.add_row(
                x.channel, x.currency, f"{x.authorized:,}", f"{x.captured:,}",
                _amount(x.captured_minor, x.currency), f"{x.voided:,}", f"{x.expired:,}",
                f"{x.refused_on_holds:,}",
            )  # fmt: skip
        if x.refunded or x.returned or x.refused_back:
            back.add_row(
                x.channel, x.currency, f"{x.refunded:,}", _amount(x.refunded_minor, x.currency),
                f"{x.returned:,}", _amount(x.returned_minor, x.currency), f"{x.refused_back:,}",
            )  # fmt: skip
    console.print(holds)
    console.print(back)


def _print_lifecycle_check(
    console: Console, result: DemoResult, positions: list[NetPosition]
) -> None:
    """Each state and step as the traffic expected; the invariants; positions sum to zero."""
    mark = "[green]OK[/]" if result.lifecycle_as_expected else "[red]MISMATCH[/]"
    states = ", ".join(f"{k} {v:,}" for k, v in sorted(result.states.items()))
    steps = ", ".join(f"{k} {v:,}" for k, v in sorted(result.steps.items()))
    console.print(
        f"{mark} lifecycle as the traffic expected: payments {states or 'none'}; "
        f"steps {steps or 'none'}; no hold resolved twice, captures within holds, "
        "refunds within captures, no available balance below its overdraft"
    )
    if result.states != result.expected_states or result.steps != result.expected_steps:
        console.print(f"  expected payments {dict(result.expected_states)}")
        console.print(f"  expected steps {dict(result.expected_steps)}")
    for v in result.lifecycle_violations[:20]:
        console.print(f"  {v}")
    totals: Counter[str] = Counter()
    for pos in positions:
        totals[pos.currency] += pos.net_minor
    unbalanced = {cur: total for cur, total in totals.items() if total}
    mark = "[red]MISMATCH[/]" if unbalanced else "[green]OK[/]"
    console.print(f"{mark} net positions sum to zero per currency {unbalanced or ''}".rstrip())


def _print_pressed(console: Console, pressed: Pressed | None) -> None:
    if pressed is None:
        return
    mark = "[green]OK[/]" if pressed.ok else "[red]MISMATCH[/]"
    console.print(
        f"{mark} bank {pressed.bank} held to its liquidity: withdrew "
        f"{_amount(pressed.withdrawn_minor, 'MAD')}, then {pressed.settled_before:,} settled "
        f"and {pressed.refused_before:,} refused AM04 before its deposit of "
        f"{_amount(pressed.deposited_minor, 'MAD')}, {pressed.settled_after:,} settled after"
    )
    if not pressed.ok:
        console.print(f"  expected {pressed.fits} settled, {REFUSED} refused, {REFUSED} after")


def _print_liquidity(console: Console, lines: list[dict[str, Any]]) -> bool:
    """Each bank's exposure against its cap and liquidity (``sakk settlement positions``);
    whether none is beyond either."""
    table = Table(title="Liquidity before the window settled: each bank's position and holds "
                  "(positive: it owes the others), its net debit cap and its deposit")  # fmt: skip
    for col in ("bank", "cur", "position", "cap", "liquidity", "used", "alert at"):
        table.add_column(col, justify="left" if col in ("bank", "cur") else "right")
    beyond = []
    for x in lines:
        cur, exposure, cap = x["currency"], x["exposure_minor"], x["net_debit_cap_minor"]
        if cap is not None and (exposure > cap or exposure > x["liquidity_minor"]):
            beyond.append(x["bank_code"])
        table.add_row(
            x["bank_code"], cur, _amount(exposure, cur),
            "-" if cap is None else _amount(cap, cur), _amount(x["liquidity_minor"], cur),
            percent(x["share_used_bps"]),
            "-" if x["alert_percent"] is None else f"{x['alert_percent']} %",
        )  # fmt: skip
    console.print(table)
    mark = "[red]MISMATCH[/]" if beyond else "[green]OK[/]"
    console.print(
        f"{mark} no bank's position and holds beyond its net debit cap or its liquidity "
        f"({len(lines)} banks){': ' + ', '.join(beyond) if beyond else ''}"
    )
    return not beyond
