"""Runs one chaos experiment end to end and returns its report.

1. A fresh embedded broker (it gets SIGSTOPped: never a shared one), a fresh ledger
   (SQLite file, or a new database on a PostgreSQL server, dropped after), the flaky
   webhook endpoint as every bank's ``webhook_url``.
2. The consumers as separate OS processes (``python -m sakk run <stage>``), several
   instances per group.
3. The seeded workload is published at a steady pace while the seeded fault plan runs
   (one bank's endpoint down for most of it); every process that dies is restarted
   (one that dies on its own is a violation).
4. Faults end; the harness waits until every payment is terminal or dead-lettered,
   every notification DELIVERED and every group's offsets committed to the end.
5. The consumers get SIGTERM (each must exit 0), every topic is read back and every
   invariant is checked. The report is also written as JSON
   (``<data_dir>/chaos/latest.json``, and ``report.json`` in a kept run directory).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
import shutil
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy import Engine, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from engine.config import Settings, load_settings
from engine.events import SETTLEMENT_WINDOW_CHANGED
from engine.kafka.client import STAGE_TOPICS, create_topics, make_producer
from engine.kafka.embedded import EmbeddedBroker
from engine.ledger.balances import all_balances
from engine.ledger.database import make_engine, read_only, upgrade
from engine.ledger.models import Notification
from engine.ledger.reference import load_reference_data, read_file
from engine.ops.action import run_action
from engine.ops.limits import SetBankLimit
from engine.read.positions import Window
from engine.supervisor import ConsumerProcess, Fleet
from engine.trust.keys import KeyPair
from producers.signing import SIMULATED_KEYS_VALID_FROM, register_signers
from sakk.app import TOPOLOGY, make_codec
from tooling.chaos import plan as fp
from tooling.chaos.exceptions import ChaosSetupError, PublishError
from tooling.chaos.faults import (
    RANDOM_FAILURES,
    DatabaseOutage,
    FlakyWebhook,
    PostgresOutage,
    SqliteOutage,
)
from tooling.chaos.invariants import Evidence, check_all
from tooling.chaos.operator import ACTOR as OPERATOR
from tooling.chaos.operator import Operator, OperatorRun
from tooling.chaos.report import ChaosReport
from tooling.chaos.scrape import CounterWatch
from tooling.chaos.wire import committed_lag, read_topics
from tooling.drain import Drain, wait_drained
from tooling.workload.chaos import (
    KILLER_MARK,
    POISON_KINDS,
    Workload,
    WorkloadBuilder,
    chaos_signers,
)
from tooling.workload.core import CURRENCY
from tooling.workload.pressing import limits_for

log = logging.getLogger(__name__)

DEFAULT_INSTANCES: Mapping[str, int] = {s.name: s.instances_under_faults for s in TOPOLOGY.stages}
STAGE_INPUTS: Mapping[str, tuple[str, ...]] = {
    s.name: s.input_topic_names() for s in TOPOLOGY.stages
}
PUBLISH_FRACTION = 0.6  # payments are spread over this share of the fault window
TICK_S = 0.05
RESTART_DELAY_S = 0.5
POISON_DEATH_LOG = "SAKK_CRASH_ON_MESSAGE_CONTAINING"  # engine.pipeline.crash's last line
POISON_DEATH_LINES = 3
# The embedded broker (Tansu 0.6) wedges a consumer group for good when a member leaves
# it (LeaveGroup, sent by a clean close) while the group is rebalancing after another
# member died: nobody gets partitions again. Apache Kafka has no such gap. So a SIGTERM
# goes only to a group whose members have all been up this long, and consuming for
# CONSUMING_STABLE_S (counted from when the harness first sees a member's log say it
# subscribed: on a loaded machine a process can take longer than GROUP_STABLE_S to
# import and subscribe), and no member of a group being stopped is killed meanwhile.
# docs/chaos.md has the reproduction.
GROUP_STABLE_S = 8.0
CONSUMING_STABLE_S = 5.0  # its join and the rebalance it starts: a session timeout and more
CONSUMING_LOG = b": consuming ["  # engine.pipeline.service: subscribed, about to join
LOG_LOOK_S = 0.25  # how often a member's log is read until it says it is consuming
MAX_DEFERRALS = 60  # a fault waits at most this many restart delays for its target
ARMED_TIMEOUT_S = 30.0  # a crash point not reached by then is disarmed by a plain kill
GRACEFUL_BOUND_EXTRA_S = 5.0  # beyond SAKK_SHUTDOWN_TIMEOUT_S: closing the clients
DRAIN_POLL_S = 1.0
NOTIFY_HORIZON_S = 24 * 3600  # far beyond any run: a notification given up is a violation
# The bank outage is planned from 10% to 80% of the fault window, but under this fault
# density the flow lags far behind the publishing (a group rebalancing after kills can
# settle nothing for many seconds), and an outage that ended on time could miss most
# notifications and prove nothing. So it lasts past its planned end until this share of
# the payments have their notifications, and at most this long after the fault window.
BANK_OUTAGE_FLOW_SHARE = 0.8
BANK_OUTAGE_OVERRUN_MAX_S = 30.0
LOG_TAIL_LINES = 15
RETRY_JOIN_S = 5.0  # an operator step told to stop ends within its retry pause


@dataclass(frozen=True)
class ChaosConfig:
    seed: int = 1
    payments: int = 500
    duration_s: float = 60.0
    database_url: str = "sqlite"  # "sqlite", a sqlite:/// URL, or a PostgreSQL server URL
    instances: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_INSTANCES))
    webhook_failure_rate: float = 0.3
    drain_timeout_s: float = 180.0
    start: datetime | None = None  # business time of the first payment (default: now)
    keep: bool = False  # keep the run directory and the PostgreSQL database

    def __post_init__(self) -> None:
        if not 1 <= self.duration_s <= 24 * 3600:
            raise ValueError(f"duration_s={self.duration_s} must be in [1, 86400]")
        if not 10 <= self.drain_timeout_s <= 24 * 3600:
            raise ValueError(f"drain_timeout_s={self.drain_timeout_s} must be in [10, 86400]")
        if set(self.instances) != set(STAGE_INPUTS) or not all(
            1 <= n <= 8 for n in self.instances.values()
        ):
            raise ValueError(f"instances must give 1 to 8 for each of {sorted(STAGE_INPUTS)}")


@contextmanager
def fresh_database(
    url: str, run_dir: Path, seed: int, keep: bool
) -> Iterator[tuple[str, DatabaseOutage, str]]:
    """(SQLAlchemy URL, outage injector, backend name) of a new, empty ledger database."""
    if url == "sqlite" or url.startswith("sqlite"):
        path = run_dir / "ledger.db" if url == "sqlite" else Path(make_url(url).database or "")
        if path.exists():
            raise ChaosSetupError(f"{path} exists: the chaos run needs a fresh ledger")
        yield f"sqlite:///{path}", SqliteOutage(str(path)), "sqlite"
        return
    server = make_url(url)
    if server.get_backend_name() != "postgresql":
        raise ChaosSetupError(f"--database-url {url!r}: expected 'sqlite' or a PostgreSQL URL")
    admin = server.set(drivername="postgresql", database="postgres").render_as_string(
        hide_password=False
    )
    name = f"sakk_chaos_{seed}_{secrets.token_hex(4)}"
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        raise ChaosSetupError(
            f"cannot create a database on {server.render_as_string()}: {exc}"
        ) from exc
    ledger = server.set(drivername="postgresql+psycopg", database=name)
    try:
        yield (
            ledger.render_as_string(hide_password=False),
            PostgresOutage(admin, name),
            "postgresql",
        )
    finally:
        if keep:
            log.warning("kept database %s", name)
        else:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )


def chaos_settings(base: Settings, **changes: object) -> Settings:
    """``base`` with the run's changes, bounds checked like any other settings."""
    values = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
    values.update(changes)
    return load_settings(environ={}, **values)


class Publisher(threading.Thread):
    """The banks: publishes the workload at a steady pace over ``window_s``."""

    def __init__(self, settings: Settings, workload: Workload, window_s: float) -> None:
        super().__init__(name="chaos-publisher", daemon=True)
        self.settings = settings
        self.workload = workload
        self.window_s = window_s
        self.error: str | None = None
        self.seconds = 0.0

    def run(self) -> None:
        started = time.monotonic()
        try:
            producer = make_producer(self.settings, "sakk-chaos-banks")
        except Exception as exc:  # reported by the harness, which then stops the run
            self.error = f"cannot create the producer: {exc!r}"
            return
        topic = self.settings.topic("initiated")
        messages = self.workload.messages
        futures = []
        try:
            for i, m in enumerate(messages):
                pause = started + self.window_s * i / len(messages) - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                futures.append(
                    producer.send(topic, key=m.key, value=m.value, headers=list(m.headers) or None)
                )
            producer.flush(timeout=self.settings.produce_timeout_s)
            failed = [f for f in futures if not f.is_done or f.failed()]
            if failed:
                first = next((f.exception for f in failed if f.is_done), None)
                self.error = (
                    f"{len(failed)} of {len(futures)} messages not acknowledged ({first!r})"
                )
        except Exception as exc:
            self.error = f"publishing stopped: {exc!r}"
        finally:
            producer.close(timeout=self.settings.produce_timeout_s)
            self.seconds = time.monotonic() - started


@dataclass
class _Member:
    """A consumer process and what the harness expects of it right now."""

    process: ConsumerProcess
    status: str = "up"  # up | down | armed | stopping
    since_s: float = 0.0
    restart_at_s: float = 0.0
    point: str = ""
    kind: str = ""  # the fault that armed it
    log_offset: int = 0  # where this start's lines begin in its log
    consuming_since: float | None = None  # first seen consuming (its log says so)
    next_log_look_s: float = 0.0


class ChaosRun:
    """One run: owns the broker, the database, the endpoint and the consumer processes."""

    def __init__(
        self, config: ChaosConfig, base: Settings, progress: Callable[[str], None] | None = None
    ) -> None:
        self.config = config
        self.base = base
        self.say = progress or (lambda _line: None)
        self.report = ChaosReport(config.seed, "", config.payments)
        self.members: dict[str, _Member] = {}
        self._quiet_groups: set[str] = set()  # stages whose graceful stop waits for quiet
        self.broker: EmbeddedBroker | None = None
        self.outage: DatabaseOutage | None = None
        self.frozen_until_s: float | None = None
        self.outage_until_s: float | None = None
        self.webhook: FlakyWebhook | None = None
        self.engine: Engine | None = None
        self.payments_published = 0
        self.bank_down_until_s: float | None = None  # planned end; None: no bank is down
        self.bank_down_latest_s = 0.0
        self._bank_down_since_s = 0.0
        self._next_flow_poll_s = 0.0
        # Wall-clock intervals in which the whole notification stage was held up: the
        # latency check leaves out what they caught in flight (tooling.chaos.latency).
        self.stage_faults: list[tuple[datetime, datetime]] = []
        self._holding: dict[str, datetime] = {}
        self.payer_banks: list[str] = []  # banks with customers: every one gets notified
        self.shutdown_timeout_s = base.shutdown_timeout_s
        self.watch = CounterWatch(base.metrics_host)  # the faults the consumers rode out
        self.pressing = limits_for(config.payments, config.seed)  # tooling.workload.pressing
        self.business_start = datetime.now(UTC)  # of the first payment: set with the workload

    # -- the run ---------------------------------------------------------------------------

    def run(self) -> ChaosReport:
        started = time.monotonic()
        run_dir = self._run_dir()
        with ExitStack() as stack:
            self._run_in(stack, run_dir)
        self.report.run_s = time.monotonic() - started
        self._write_json(run_dir)
        if self.report.ok and not self.config.keep:
            shutil.rmtree(run_dir, ignore_errors=True)  # kept on failure: logs to read
        else:
            self.say(f"kept {run_dir}")
        return self.report

    def _write_json(self, run_dir: Path) -> None:
        text = json.dumps(self.report.to_dict(), indent=2, sort_keys=True) + "\n"
        (run_dir / "report.json").write_text(text)
        latest = run_dir.parent / "latest.json"
        latest.write_text(text)
        self.say(f"report {latest}")

    def _run_dir(self) -> Path:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        path = (
            self.base.data_dir / "chaos" / f"seed-{self.config.seed}-{stamp}-{secrets.token_hex(2)}"
        )
        path.mkdir(parents=True, exist_ok=False)
        return path

    def _run_in(self, stack: ExitStack, run_dir: Path) -> None:
        config = self.config
        self.broker = stack.enter_context(EmbeddedBroker(log_path=run_dir / "broker.log"))
        url, self.outage, backend = stack.enter_context(
            fresh_database(config.database_url, run_dir, config.seed, config.keep)
        )
        self.report.database = backend
        webhook = FlakyWebhook(
            KeyPair.generate(), config.seed, config.webhook_failure_rate, hold_s=1.5
        )
        stack.callback(webhook.stop)
        webhook.start()
        self.webhook = webhook
        settings = self._settings(url, run_dir, webhook)
        self.shutdown_timeout_s = settings.shutdown_timeout_s
        engine, start_balances = self._prepare(settings, webhook)
        stack.callback(engine.dispose)
        workload = self._workload(settings)
        self.engine, self.payments_published = engine, len(workload.payments)
        fleet = Fleet(settings, run_dir / "logs", TOPOLOGY)
        stack.callback(self._stop_all, fleet)
        self.say(f"run directory {run_dir}")
        self._start_consumers(fleet)
        faults = fp.plan_faults(
            config.seed, config.duration_s, list(self.members), self.payer_banks
        )
        publisher = Publisher(settings, workload, config.duration_s * PUBLISH_FRACTION)
        operator = self._operator(settings, engine, workload)
        publisher.start()
        operator.start()
        self._inject(faults)
        self._end_faults()
        self._join(operator)
        publisher.join(settings.produce_timeout_s + config.duration_s)
        if publisher.is_alive() or publisher.error:
            raise PublishError(publisher.error or "publisher did not finish")
        self.report.publish_s = publisher.seconds
        self._drain(engine, settings, workload)
        self._stop_gracefully(fleet)
        self._check(engine, settings, workload, start_balances, webhook, operator.result)
        self.report.observed = self.watch.totals()

    def _operator(self, settings: Settings, engine: Engine, workload: Workload) -> Operator:
        """The operator's steps (tooling.chaos.operator) on the fault window's clock."""
        assert workload.pressing is not None
        self.report.opened, self.report.fault_window_s = datetime.now(UTC), self.config.duration_s
        return Operator(
            settings, engine, make_codec(settings), workload.pressing,
            Window.containing(self.business_start), time.monotonic(), self.config.duration_s,
            self.config.duration_s + self.config.drain_timeout_s,
        )  # fmt: skip

    def _join(self, operator: Operator) -> None:
        """Wait (bounded) for the operator's last step, the faults' clock ticking."""
        while operator.is_alive() and time.monotonic() < operator.deadline:
            self._ticking(DRAIN_POLL_S)
        operator.stopping.set()
        operator.join(RETRY_JOIN_S)
        if operator.is_alive():
            self.report.violations.append("the operator's steps did not end within the run")

    def _settings(self, url: str, run_dir: Path, webhook: FlakyWebhook) -> Settings:
        assert self.broker is not None
        return chaos_settings(
            self.base,
            kafka_bootstrap_servers=self.broker.bootstrap_servers,
            database_url=url,
            data_dir=run_dir,
            notify_log_path=run_dir / "notifications.jsonl",
            topic_partitions=6,
            session_timeout_ms=3_000,  # rebalances after a kill take seconds, not tens
            heartbeat_interval_ms=1_000,
            batch_max_records=100,  # more batch boundaries: more instants to crash at
            notify_sender="webhook",
            webhook_signing_key_files=str(self._switch_key_file(run_dir, webhook)),
            webhook_timeout_ms=1_000,
            notify_retry_initial_ms=50,
            notify_retry_max_ms=1_000,  # every endpoint recovers: retried until delivered
            notify_horizon_s=NOTIFY_HORIZON_S,
            notify_lease_s=5,  # a killed dispatcher's claims come back within seconds
            db_retry_backoff_max_ms=1_000,
            db_retry_max_attempts=600,
            shutdown_timeout_s=10,
            expiry_interval_ms=500,  # a hold due to expire is released within a second
            settlement_close_delay_s=2,  # the window is closed while the faults run
            metrics_port=0,
            crash_point="",
            crash_on_message_containing=KILLER_MARK,  # the one planted poison
        )

    @staticmethod
    def _switch_key_file(run_dir: Path, webhook: FlakyWebhook) -> Path:
        """The switch's webhook signing key, for the notification processes to read."""
        path = run_dir / "switch-signing.pem"
        if not path.exists():
            webhook.switch_key.write(path)
        return path

    def _prepare(self, settings: Settings, webhook: FlakyWebhook) -> tuple[Engine, dict[str, int]]:
        create_topics(settings)
        create_topics(settings, [SETTLEMENT_WINDOW_CHANGED.topic(settings)])  # the operator's
        upgrade(settings.ledger_url)
        engine = make_engine(settings.ledger_url)
        base = read_file(settings.reference_file)
        # The banks the fault plan may take down: those of the reference file, so that a
        # seed plans the same faults with the pressing banks added.
        self.payer_banks = sorted(
            {
                a["bank"]
                for a in base.get("accounts", [])
                if a["kind"] == "CUSTOMER" and a.get("status", "ACTIVE") == "ACTIVE"
            }
        )
        self.pressing = limits_for(self.config.payments, self.config.seed)
        reference = self.pressing.extend(base)
        for bank in reference.get("banks", []):
            bank["webhook_url"] = webhook.url_for(bank["code"])
        load_reference_data(engine, reference)
        for plan in self.pressing.banks.values():  # the tight caps, as an operator sets them
            if plan.cap_minor != plan.reference_cap_minor:
                limit = SetBankLimit(plan.bank, CURRENCY, plan.cap_minor, plan.alert_percent)
                run_action(engine, limit, OPERATOR, datetime.now(UTC))
        # The banks' public keys, as each bank's operator registers them: the workload signs
        # with their private halves (chaos_signers of the same reference and seed).
        register_signers(
            engine, chaos_signers(reference, self.config.seed), SIMULATED_KEYS_VALID_FROM
        )
        with engine.connect() as conn:
            balances = all_balances(conn)
        return engine, balances

    def _workload(self, settings: Settings) -> Workload:
        start = self.config.start or datetime.now(UTC).replace(microsecond=0)
        self.business_start = start
        self.report.start = start.strftime("%Y-%m-%dT%H:%M:%S%z")
        codec = make_codec(settings)
        workload = WorkloadBuilder(
            read_file(settings.reference_file), self.config.seed, start, codec,
            topic=settings.topic("initiated"), hold_expiry_default_s=settings.hold_expiry_s,
            pressing=self.pressing,
        ).build(self.config.payments)  # fmt: skip
        self.report.poison = Counter(
            {label: n for label, n in workload.labels.items() if label in POISON_KINDS}
        )
        self.report.bank_retries = workload.bank_retries
        self.report.pressing_payments = sum(b.payments for b in self.pressing.banks.values())
        self.say(
            f"workload: {len(workload.payments)} payments, {len(workload.steps)} lifecycle "
            f"steps, {workload.poison} poison, {workload.bank_retries} bank retries; "
            f"start {start.isoformat()}"
        )
        return workload

    def _start_consumers(self, fleet: Fleet) -> None:
        for stage, count in self.config.instances.items():
            for _ in range(count):
                label = f"{stage}-{len(fleet.of(stage)) + 1}"
                for process in fleet.start(stage, 1, self.watch.port_of(label)):
                    self.members[process.label] = _Member(process, since_s=time.monotonic())

    # -- faults ----------------------------------------------------------------------------

    def _inject(self, faults: list[fp.Fault]) -> None:
        """Apply each fault when due; one aimed at a consumer that is not up waits for it."""
        opened = time.monotonic()
        pending = [(opened + f.at_s, 0, f) for f in faults]
        while True:
            now = time.monotonic()
            due = [p for p in pending if p[0] <= now]
            pending = [p for p in pending if p[0] > now]
            # A graceful stop waits for its group to be quiet; while one waits, other faults
            # aimed at that group wait behind it, or the group might never be quiet.
            self._quiet_groups = {
                _stage_of(f.target)
                for at, tries, f in due + pending
                if f.kind == fp.GRACEFUL_STOP and (at <= now or tries > 0)
            }
            for _at, tries, fault in due:
                if self._apply(fault, now):
                    self.say(f"fault {fault.describe()}")
                elif tries < MAX_DEFERRALS:
                    pending.append((now + RESTART_DELAY_S, tries + 1, fault))
                else:
                    self.report.missed[fault.kind] += 1
            self._tick(now)
            if not pending and now - opened >= self.config.duration_s:
                return
            time.sleep(TICK_S)

    def _apply(self, fault: fp.Fault, now_s: float) -> bool:
        if fault.kind in (fp.BROKER_FREEZE, fp.DATABASE_OUTAGE):
            return self._stall(fault, now_s)
        if fault.kind == fp.BANK_OUTAGE:
            return self._take_bank_down(fault, now_s)
        member = self.members[fault.target]
        if fault.kind != fp.GRACEFUL_STOP and _stage_of(fault.target) in self._quiet_groups:
            return False  # a graceful stop of this group goes first
        if member.status != "up" or not member.process.alive():
            return False  # down, armed or stopping already: try again once it is back
        if any(m.status == "stopping" for m in self._group_of(member)):
            return False  # see GROUP_STABLE_S
        if fault.kind == fp.GRACEFUL_STOP:
            if not all(
                m.status == "up"
                and now_s - m.since_s >= GROUP_STABLE_S
                and self._consuming_for(m, now_s) >= CONSUMING_STABLE_S
                for m in self._group_of(member)
            ):
                return False  # see GROUP_STABLE_S
            assert member.process.process is not None
            self._stage_held_up(member)
            self._read_counters(member)
            member.process.process.send_signal(signal.SIGTERM)
            member.status, member.since_s = "stopping", now_s
            return True
        self._stage_held_up(member)
        self._read_counters(member)
        member.process.kill()
        self.report.faults[fp.KILL] += 1
        if fault.kind == fp.KILL:
            self._down(member, now_s)
            return True
        member.process.settings = member.process.settings.replace(
            crash_point=fault.point, crash_probability_ppm=1_000_000
        )
        self._restart(member, now_s, status="armed")
        member.point, member.kind = fault.point, fault.kind
        return True

    def _group_of(self, member: _Member) -> list[_Member]:
        return [m for m in self.members.values() if m.process.stage == member.process.stage]

    def _stall(self, fault: fp.Fault, now_s: float) -> bool:
        assert self.broker is not None and self.outage is not None
        if fault.kind == fp.BROKER_FREEZE and self.frozen_until_s is None:
            self._held_up(fault.kind)
            self.broker.freeze()
            self.frozen_until_s = now_s + fault.duration_s
        elif fault.kind == fp.DATABASE_OUTAGE and self.outage_until_s is None:
            self._held_up(fault.kind)
            self.outage.begin()
            self.outage_until_s = time.monotonic() + fault.duration_s
        else:
            return False
        self.report.faults[fault.kind] += 1
        stalls = self.report.stalls_s
        stalls[fault.kind] = stalls.get(fault.kind, 0.0) + fault.duration_s
        return True

    def _take_bank_down(self, fault: fp.Fault, now_s: float) -> bool:
        assert self.webhook is not None
        if self.bank_down_until_s is not None or self.report.down_bank:
            return False  # one, once: the other banks must stay healthy
        self.webhook.take_down(fault.bank)
        self.bank_down_until_s = now_s + fault.duration_s
        window_end_s = now_s - fault.at_s + self.config.duration_s
        self.bank_down_latest_s = window_end_s + BANK_OUTAGE_OVERRUN_MAX_S
        self._bank_down_since_s = now_s
        self.report.down_bank, self.report.down_planned_s = fault.bank, fault.duration_s
        self.report.down_from = datetime.now(UTC)
        self.report.faults[fault.kind] += 1
        return True

    def _bank_outage_over(self, now_s: float) -> bool:
        """Past its planned end: over once most payments have their notifications."""
        if self.bank_down_until_s is None or now_s < self.bank_down_until_s:
            return False
        if now_s >= self.bank_down_latest_s:
            return True
        if now_s < self._next_flow_poll_s or self.outage_until_s is not None or self.engine is None:
            return False  # polled once a second; not at all while the database is out
        self._next_flow_poll_s = now_s + DRAIN_POLL_S
        n = Notification.__table__
        try:
            with read_only(self.engine).connect() as conn:
                notified = conn.execute(select(func.count(n.c.payment_id.distinct()))).scalar_one()
        except DBAPIError:  # a connection the database outage closed: ask again later
            return False
        return notified >= BANK_OUTAGE_FLOW_SHARE * self.payments_published

    def _bring_bank_up(self, now_s: float) -> None:
        assert self.webhook is not None
        self.webhook.bring_up(self.report.down_bank)
        self.bank_down_until_s = None
        self.report.down_s = now_s - self._bank_down_since_s
        self.report.down_until = datetime.now(UTC)

    def _tick(self, now_s: float) -> None:
        if self.frozen_until_s is not None and now_s >= self.frozen_until_s:
            self._thaw()
        if self.outage_until_s is not None and now_s >= self.outage_until_s:
            self._end_outage()
        if self._bank_outage_over(now_s):
            self._bring_bank_up(now_s)
        for member in self.members.values():
            self._supervise(member, now_s)
            if member.status == "up" and member.consuming_since is None:
                self._consuming_for(member, now_s)  # noted when first seen, not when asked
        if self.watch.due(now_s):
            for member in self.members.values():
                self._read_counters(member)

    def _read_counters(self, member: _Member) -> None:
        process = member.process.process
        if process is not None and member.process.alive():
            self.watch.read(member.process.label, process.pid)

    def _thaw(self) -> None:
        assert self.broker is not None
        self.broker.thaw()
        self.frozen_until_s = None
        self._released(fp.BROKER_FREEZE)

    def _end_outage(self) -> None:
        assert self.outage is not None
        self.outage.end()
        self.outage_until_s = None
        self._released(fp.DATABASE_OUTAGE)

    def _held_up(self, key: str) -> None:
        """From now until ``_released(key)`` nothing is delivered to any bank: a stage fault."""
        self._holding.setdefault(key, datetime.now(UTC))

    def _released(self, key: str) -> None:
        since = self._holding.pop(key, None)
        if since is not None:
            self.stage_faults.append((since, datetime.now(UTC)))

    def _stage_held_up(self, member: _Member) -> None:
        """A notification consumer going down holds up its dispatcher's deliveries too."""
        if member.process.stage == TOPOLOGY.notifying.name:
            self._held_up(member.process.label)

    def _supervise(self, member: _Member, now_s: float) -> None:
        p = member.process
        if member.status == "down":
            if now_s >= member.restart_at_s and self.frozen_until_s is None:
                # Not while frozen: a client starting against a stopped broker gives up on
                # its first version probe; starting is not what a freeze tests.
                self._restart(member, now_s)
            return
        if p.alive():
            if member.status == "armed" and now_s - member.since_s > ARMED_TIMEOUT_S:
                log.info("%s never reached %s; disarming", p.label, member.point)
                p.kill()
                self.report.faults[fp.KILL] += 1
                self.report.missed[member.kind] += 1
                self._down(member, now_s)
            elif member.status == "stopping" and now_s - member.since_s > self._graceful_bound_s():
                p.kill()
                self.report.violations.append(
                    f"{p.label} did not exit within {self._graceful_bound_s():.0f} s of SIGTERM"
                )
                self._down(member, now_s)
            return
        code = p.process.returncode if p.process else None
        if code == -signal.SIGKILL and self._killed_by_the_poison(p):
            self.report.poison_deaths += 1  # planned: quarantined after MAX_DEATHS of them
            if member.status == "armed":
                self.report.missed[member.kind] += 1
        elif member.status == "armed" and code == -signal.SIGKILL:
            self.report.faults[member.kind] += 1
            if member.kind == fp.CRASH_POINT:
                self.report.crash_points[member.point] += 1
        elif member.status == "stopping":
            self._stopped(member, now_s, code)
        else:
            self.report.violations.append(
                f"{p.label} exited on its own (code {code}): {self._log_tail(p)}"
            )
        self._down(member, now_s)

    def _stopped(self, member: _Member, now_s: float, code: int | None) -> None:
        seconds = now_s - member.since_s
        self.report.faults[fp.GRACEFUL_STOP] += 1
        self.report.graceful_exit_s.append(seconds)
        if code != 0:
            self.report.violations.append(
                f"{member.process.label} exited with code {code} on SIGTERM: "
                f"{self._log_tail(member.process)}"
            )

    def _graceful_bound_s(self) -> float:
        return self.shutdown_timeout_s + GRACEFUL_BOUND_EXTRA_S

    def _down(self, member: _Member, now_s: float) -> None:
        self._stage_held_up(member)  # since the kill or SIGTERM, or since found dead
        member.status, member.since_s, member.restart_at_s = "down", now_s, now_s + RESTART_DELAY_S
        member.point = member.kind = ""
        member.process.settings = member.process.settings.replace(crash_point="")

    def _consuming_for(self, member: _Member, now_s: float) -> float:
        """How long ``member`` has been consuming, as far as the harness has seen: from the
        first look at its log (every LOG_LOOK_S, from each tick) that found this start's
        "consuming" line (a loaded machine can take seconds to import and subscribe;
        CONSUMING_STABLE_S counts from then)."""
        if member.consuming_since is None and now_s >= member.next_log_look_s:
            member.next_log_look_s = now_s + LOG_LOOK_S
            try:
                with open(member.process.log_path, "rb") as log:
                    log.seek(member.log_offset)
                    if CONSUMING_LOG in log.read():
                        member.consuming_since = now_s
            except OSError:
                pass
        return 0.0 if member.consuming_since is None else now_s - member.consuming_since

    def _restart(self, member: _Member, now_s: float, status: str = "up") -> None:
        try:
            member.log_offset = member.process.log_path.stat().st_size
        except OSError:
            member.log_offset = 0
        member.consuming_since, member.next_log_look_s = None, 0.0
        member.process.start(self.watch.port_of(member.process.label))
        member.status, member.since_s = status, now_s
        self.report.restarts += 1
        self._released(member.process.label)

    def _end_faults(self) -> None:
        if self.frozen_until_s is not None:
            self._thaw()
        if self.outage_until_s is not None:
            self._end_outage()
        # The bank outage ends by its own rule (_bank_outage_over), in the drain at the latest.
        deadline = time.monotonic() + ARMED_TIMEOUT_S + RESTART_DELAY_S
        while any(m.status != "up" for m in self.members.values()):
            now = time.monotonic()
            if now > deadline:
                break
            self._tick(now)
            time.sleep(TICK_S)

    # -- drain, stop, check ----------------------------------------------------------------

    def _drain(self, engine: Engine, settings: Settings, workload: Workload) -> None:
        """Wait (bounded) until every payment is answered, every step (expiries included)
        applied or refused, every notification DELIVERED and announced by its PaymentNotified,
        and every group's offsets committed; the faults' clock keeps ticking meanwhile."""
        started = time.monotonic()
        wanted = Drain(
            published=workload.published,
            steps=len(workload.steps),
            delivered=True,
            lag=lambda: self._lag(settings),
        )
        state = wait_drained(
            engine, wanted, self.config.drain_timeout_s, DRAIN_POLL_S, pause=self._ticking
        )
        if state.done:
            self.report.drain_s = time.monotonic() - started
            self.say(f"drained in {self.report.drain_s:.1f} s")
        elif state.stuck:
            self.report.violations.append(f"cannot drain: {state.text}")
        else:
            self.report.violations.append(
                f"did not drain within {self.config.drain_timeout_s:.0f} s: {state.text}"
            )

    def _ticking(self, seconds: float) -> None:
        """Pause ``seconds``, ticking the faults' clock (thaws, outages' ends) meanwhile."""
        until = time.monotonic() + seconds
        while (now := time.monotonic()) < until:
            self._tick(now)
            time.sleep(min(TICK_S, until - now))

    def _lag(self, settings: Settings) -> dict[str, int]:
        lag: dict[str, int] = {}
        for stage, inputs in STAGE_INPUTS.items():
            lag.update(
                committed_lag(settings, settings.group(stage), [settings.topic(t) for t in inputs])
            )
        return lag

    def _stop_gracefully(self, fleet: Fleet) -> None:
        """SIGTERM to every consumer: each must finish its batch, commit and exit 0."""
        running = {
            label for label, m in self.members.items() if m.status == "up" and m.process.alive()
        }
        for member in self.members.values():
            self._read_counters(member)  # what each counted, before it exits
        for label, code in fleet.stop().items():
            if label in running and code != 0:
                self.report.violations.append(
                    f"{label} exited with code {code} on the final SIGTERM: "
                    f"{self._log_tail(self.members[label].process)}"
                )
        for member in self.members.values():
            member.status = "stopped"

    def _stop_all(self, fleet: Fleet) -> None:
        if self.frozen_until_s is not None:
            self._thaw()
        if self.outage_until_s is not None:
            self._end_outage()
        if self.bank_down_until_s is not None:
            self._bring_bank_up(time.monotonic())
        for member in fleet.members:
            member.kill()

    def _check(
        self,
        engine: Engine,
        settings: Settings,
        workload: Workload,
        start_balances: dict[str, int],
        webhook: FlakyWebhook,
        operator: OperatorRun,
    ) -> None:
        lag = self._lag(settings)
        if lag:
            self.report.violations.append(f"offsets not committed after the final stop: {lag}")
        wire_topics = {name: settings.topic(name) for name in STAGE_TOPICS}
        records = read_topics(settings, list(wire_topics.values()))
        wire = {name: records[topic] for name, topic in wire_topics.items()}
        evidence = Evidence(
            settings,
            make_codec(settings),
            workload,
            start_balances,
            wire,
            webhook.log,
            down_bank=self.report.down_bank or None,
            down_window=self._down_window(),
            stage_faults=self.stage_faults
            + [(t, datetime.now(UTC)) for t in self._holding.values()],
            operator=operator,
        )
        self.report.stage_faults = list(evidence.stage_faults)
        with engine.connect() as conn:
            checked, violations = check_all(conn, evidence)
        self.report.checked = checked
        self.report.operator_moves = sorted(
            [
                *((f"{m.kind} {m.bank} {m.outcome}", m.decided_s or 0.0)
                  for m in operator.movements),
                *((f"window {state}", at) for state, at in operator.window.moves),
            ],
            key=lambda move: move[1],
        )  # fmt: skip
        self.report.violations += violations
        self.report.webhook_modes = webhook.log.modes.copy()
        failures = sum(n for mode, n in webhook.log.modes.items() if mode in RANDOM_FAILURES)
        if failures:
            self.report.faults["webhook_failure"] += failures

    def _down_window(self) -> tuple[datetime, datetime] | None:
        if self.report.down_from is None or self.report.down_until is None:
            return None
        return self.report.down_from, self.report.down_until

    @staticmethod
    def _killed_by_the_poison(process: ConsumerProcess) -> bool:
        """The process's last words: the planted poison killed it, not a fault of the plan."""
        try:
            lines = process.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return False
        return any(POISON_DEATH_LOG in line for line in lines[-POISON_DEATH_LINES:])

    @staticmethod
    def _log_tail(process: ConsumerProcess) -> str:
        try:
            lines = process.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(lines[-LOG_TAIL_LINES:])


def run_chaos(
    config: ChaosConfig, base: Settings, progress: Callable[[str], None] | None = None
) -> ChaosReport:
    """Run the experiment ``config`` describes; the report says what held and what did not."""
    return ChaosRun(config, base, progress).run()


def _stage_of(label: str) -> str:
    """``settlement-2`` -> ``settlement``."""
    return label.rsplit("-", 1)[0]
