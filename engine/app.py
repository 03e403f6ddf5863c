"""Wiring: settings -> broker, ledger, codec and stages. The CLI and tests build on this."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from engine import metrics
from engine.config import Settings
from engine.kafka.client import create_topics
from engine.kafka.embedded import EmbeddedBroker
from engine.ledger.database import make_engine, upgrade
from engine.pipeline.contract import Stage
from engine.pipeline.service import ConsumerService
from engine.serialization import (
    AvroCodec,
    KafkaSchemaStore,
    SchemaRegistry,
    register_current_schemas,
)

if TYPE_CHECKING:
    from consumers.delivery import Dispatcher

log = logging.getLogger(__name__)

STAGE_NAMES = ("validator", "settlement", "notification")


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


def make_codec(settings: Settings, with_store: bool = True) -> AvroCodec:
    """Codec over the local schemas; with the Kafka store it also learns other writers' schemas."""
    registry = SchemaRegistry.from_dir(settings.schemas_dir)
    store = KafkaSchemaStore(settings) if with_store else None
    codec = AvroCodec(registry, store)
    if store is not None:
        register_current_schemas(codec, store)
    return codec


def build_stage(name: str, settings: Settings) -> Stage[Any]:
    if name == "validator":
        from consumers.validator import Validator

        return Validator(settings)
    if name == "settlement":
        from consumers.settlement import Settlement

        return Settlement(settings)
    if name == "notification":
        from consumers.notification import NotificationStage

        return NotificationStage(settings, settings.notify_sender)
    raise ValueError(f"unknown consumer {name!r}: expected one of {STAGE_NAMES}")


def prepare(settings: Settings) -> None:
    """Topics and ledger schema exist (idempotent)."""
    create_topics(settings)
    upgrade(settings.ledger_url)


def run_consumers(
    settings: Settings, names: tuple[str, ...], stop_event: threading.Event
) -> list[StageThread]:
    """Run each named stage in its own thread of this process, sharing one metrics server.

    A thread whose loop raised sets ``stop_event`` (every other stage then stops after
    its batch in hand) and is marked ``failed``: the process must exit non-zero.
    """
    health = metrics.HealthState()
    server = metrics.serve_metrics(settings.metrics_host, settings.metrics_port, health)
    if server:
        log.info("metrics on http://%s:%d/metrics", settings.metrics_host, server.port)
    engine = ledger_engine(settings)
    codec = make_codec(settings)
    threads: list[StageThread] = []
    for name in names:
        stage = build_stage(name, settings)
        service = ConsumerService(stage, engine, codec, settings, health, stop_event)
        threads.append(_start(name, service.run, stop_event))
        if name == "notification":
            dispatcher = make_dispatcher(settings, engine, codec, stop_event)
            stage.on_committed = dispatcher.wake  # type: ignore[attr-defined]
            threads.append(_start("delivery", dispatcher.run, stop_event))
        if name == "settlement":
            from consumers.expiry import ExpiryScheduler

            scheduler = ExpiryScheduler(settings, engine, codec, stop_event)
            threads.append(_start("expiry", scheduler.run, stop_event))
    return threads


def make_dispatcher(
    settings: Settings, engine: Engine, codec: AvroCodec, stop_event: threading.Event
) -> Dispatcher:
    """The notification service's delivery loop, with the sender ``SAKK_NOTIFY_SENDER`` names."""
    from consumers.delivery import Dispatcher
    from consumers.senders import make_sender

    return Dispatcher(settings, engine, codec, make_sender(settings), stop_event)


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
