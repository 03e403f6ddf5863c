"""Wiring: settings -> broker, ledger, codec and stages. The CLI and tests build on this."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine

from consumers.topology import STAGES
from engine import metrics
from engine.config import Settings
from engine.kafka.client import create_topics
from engine.kafka.embedded import EmbeddedBroker
from engine.ledger.database import make_engine, upgrade
from engine.ledger.schemas import LedgerApprovedSchemas, approve_release_schemas
from engine.pipeline.contract import Retryable, Stage
from engine.pipeline.service import ConsumerService
from engine.serialization import AvroCodec, SchemaRegistry, read_release_schemas
from engine.topology import Companion, StageSpec, Topology, WokenCompanion

log = logging.getLogger(__name__)

# The stages, each run as a process by ``sakk run <name>``.
TOPOLOGY = Topology(STAGES, launcher=(sys.executable, "-m", "sakk", "run"))
STAGE_NAMES = TOPOLOGY.names


@contextmanager
def kafka_for(settings: Settings) -> Iterator[Settings]:
    """Settings with a reachable broker: the configured one, or an embedded one for this block."""
    if not settings.uses_embedded_broker:
        yield settings
        return
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with EmbeddedBroker(log_path=settings.data_dir / "broker.log") as broker:
        log.info("embedded broker listening on %s", broker.bootstrap_servers)
        yield settings.replace(kafka_bootstrap_servers=broker.bootstrap_servers)


def ledger_engine(settings: Settings, migrate: bool = False) -> Engine:
    if migrate:
        upgrade(settings.ledger_url)
    return make_engine(settings.ledger_url, pool_size=settings.db_pool_size)


def make_codec(settings: Settings, engine: Engine | None = None) -> AvroCodec:
    """Codec over the release's schemas; with the ledger, also every schema approved there.

    With ``engine`` the release's own schemas are approved first (idempotent); a ledger
    holding another schema under one of their fingerprints stops the start
    (ReleaseSchemaConflictError). Without it only the release's schemas decode.
    """
    registry = SchemaRegistry.from_dir(settings.schemas_dir)
    if engine is None:
        return AvroCodec(registry)
    approve_release_schemas(engine, read_release_schemas(settings.schemas_dir))
    return AvroCodec(registry, LedgerApprovedSchemas(engine))


def _codec_once_the_ledger_answers(
    settings: Settings, engine: Engine, stop_event: threading.Event
) -> AvroCodec | None:
    """make_codec, retried as a batch is while the ledger is down (None: asked to stop).

    A schema conflict (ReleaseSchemaConflictError) is no outage: it is raised at once.
    """
    delay_s = 0.05
    cap_s = settings.db_retry_backoff_max_ms / 1000
    for attempt in range(1, settings.db_retry_max_attempts + 1):
        try:
            return make_codec(settings, engine)
        except Exception as exc:
            if not Retryable.covers(exc):
                raise
            log.warning(
                "approved schemas unreadable (attempt %d/%d): %s",
                attempt, settings.db_retry_max_attempts, str(exc).splitlines()[0],
            )  # fmt: skip
            if stop_event.wait(delay_s):
                return None
            delay_s = min(delay_s * 2, cap_s)
    raise RuntimeError(
        f"approved schemas unreadable after {settings.db_retry_max_attempts} attempts"
    )


def build_stage(name: str, settings: Settings) -> Stage[Any]:
    return TOPOLOGY.stage(name).factory(settings)


def prepare(settings: Settings) -> None:
    """Topics, ledger schema and the release's approved schemas exist (idempotent)."""
    create_topics(settings)
    upgrade_and_approve_release(settings)


def upgrade_and_approve_release(settings: Settings, revision: str = "head") -> None:
    """Bring the ledger to ``revision``; at head, approve this release's own schemas."""
    upgrade(settings.ledger_url, revision)
    if revision != "head":
        return
    engine = make_engine(settings.ledger_url)
    try:
        approve_release_schemas(engine, read_release_schemas(settings.schemas_dir))
    finally:
        engine.dispose()


def run_consumers(
    settings: Settings, names: tuple[str, ...], stop_event: threading.Event
) -> list[StageThread]:
    """Run each named stage in its own thread of this process, sharing one metrics server.

    A thread whose loop raised sets ``stop_event`` (every other stage then stops after
    its batch in hand) and is marked ``failed``: the process must exit non-zero.
    Raises SettingsError, before anything starts, when a stage's settings cannot work
    (the notification sender's key).
    """
    specs = [TOPOLOGY.stage(name) for name in names]
    for spec in specs:
        if spec.check is not None:
            spec.check(settings)
    health = metrics.HealthState()
    server = metrics.serve_metrics(settings.metrics_host, settings.metrics_port, health)
    if server:
        log.info("metrics on http://%s:%d/metrics", settings.metrics_host, server.port)
    engine = ledger_engine(settings)
    codec = _codec_once_the_ledger_answers(settings, engine, stop_event)
    if codec is None:  # asked to stop while the ledger was down
        return []
    threads: list[StageThread] = []
    for spec in specs:
        threads += _start_stage(spec, settings, engine, codec, health, stop_event)
    return threads


def _start_stage(
    spec: StageSpec,
    settings: Settings,
    engine: Engine,
    codec: AvroCodec,
    health: metrics.HealthState,
    stop_event: threading.Event,
) -> list[StageThread]:
    """The stage's thread, then its companions', each woken by its commits if declared so."""
    companions = [(c, c.factory(settings, engine, codec, stop_event)) for c in spec.companions]
    woken = tuple(_wake_of(c.name, loop) for c, loop in companions if c.woken_by_commits)
    service = ConsumerService(
        spec.factory(settings), engine, codec, settings, health, stop_event,
        observes=spec.observes, on_committed=woken,
    )  # fmt: skip
    threads = [_start(spec.name, service.run, stop_event)]
    return threads + [_start(c.name, loop.run, stop_event) for c, loop in companions]


def _wake_of(name: str, loop: Companion) -> Callable[[], None]:
    if not isinstance(loop, WokenCompanion):
        raise TypeError(f"{name} is declared woken by commits, yet has no wake()")
    return loop.wake


class StageThread(threading.Thread):
    """A stage's (or a helper loop's) thread; ``failed`` once an exception escaped its loop."""

    def __init__(self, name: str, target: Callable[[], None], stop_event: threading.Event):
        super().__init__(name=name)
        self._loop = target
        self._stop_event = stop_event
        self.failed = False

    def run(self) -> None:
        try:
            self._loop()
        except BaseException:
            self.failed = True
            log.exception("%s stopped on an error; stopping the process", self.name)
            self._stop_event.set()  # the other stages finish their batch and stop cleanly
            raise


def _start(name: str, target: Callable[[], None], stop_event: threading.Event) -> StageThread:
    thread = StageThread(name, target, stop_event)
    thread.start()
    return thread
