"""Shared fixtures: the embedded broker, ledgers on SQLite and PostgreSQL, running flows.

Each test gets its own topics (a unique topic prefix) and consumer groups, so
tests never see each other's messages on the shared broker.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine

from engine.config import Settings, load_settings
from engine.kafka.client import Outgoing, create_topics, make_producer, send_all
from engine.kafka.embedded import EmbeddedBroker
from engine.ledger.database import make_engine, upgrade
from engine.ledger.reference import load_reference_data, read_file
from engine.serialization import AvroCodec
from sakk.app import make_codec, run_consumers

POSTGRES_ADMIN_URL = os.environ.get(
    "SAKK_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
from tests.factories import REFERENCE_FILE, signed  # noqa: E402

DRAIN_TIMEOUT_S = 60.0


def postgres_available() -> str | None:
    """None when the local PostgreSQL answers, else the reason it does not."""
    try:
        with psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return f"PostgreSQL at {POSTGRES_ADMIN_URL} unreachable: {exc}"


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as b:
        yield b


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    reason = postgres_available()
    if reason:
        pytest.fail(
            reason + " (start it: pg_ctlcluster --skip-systemctl-redirect"
            " $(ls /etc/postgresql) main start)"
        )
    name = f"sakk_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    yield f"{base}/{name}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """The same test against the embedded default and the production database."""
    return str(
        request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")
    )


@pytest.fixture
def settings_factory(tmp_path: Path) -> Callable[..., Settings]:
    def make(bootstrap: str, database_url: str, **overrides: Any) -> Settings:
        prefix = f"t{uuid.uuid4().hex[:10]}"
        values: dict[str, Any] = dict(
            kafka_bootstrap_servers=bootstrap,
            database_url=database_url,
            data_dir=tmp_path,
            topic_prefix=prefix,
            consumer_group_prefix=prefix,
            topic_partitions=3,
            metrics_port=0,
            notify_log_path=tmp_path / "notifications.jsonl",
            batch_max_records=200,
        )
        values.update(overrides)
        return load_settings(environ={}, **values)

    return make


@dataclass
class Flow:
    """A running Sakk flow for one test: topics, ledger, the three consumers in threads."""

    settings: Settings
    engine: Engine
    codec: AvroCodec
    stop_event: threading.Event
    threads: list[threading.Thread] = field(default_factory=list)

    def publish(self, records: list[dict[str, Any]], raw: list[bytes] = ()) -> None:  # type: ignore[assignment]
        """Publish as the banks do: each payment signed by its payer's bank (raw: by 007)."""
        topic = self.settings.topic("initiated")
        messages = [
            self.signed_message(
                r["payer_account"].encode(), self.codec.encode("PaymentInitiated", r),
                r["payer_bank"],
            )
            for r in records
        ]  # fmt: skip
        messages += [self.signed_message(b"garbage", value) for value in raw]
        self.send([m for m in messages if m.topic == topic])

    def publish_steps(self, records: list[dict[str, Any]]) -> None:
        """Publish steps as the banks do: on payments.initiated, signed by their sender."""
        self.send([
            self.signed_message(
                r["payer_account"].encode(), self.codec.encode("PaymentStepRequested", r),
                r["sender_bank"],
            )
            for r in records
        ])  # fmt: skip

    def publish_encoded(self, values: list[bytes], key: bytes = b"k", bank: str = "007") -> None:
        self.send([self.signed_message(key, v, bank) for v in values])

    def signed_message(self, key: bytes, value: bytes, bank: str = "007") -> Outgoing:
        topic = self.settings.topic("initiated")
        return Outgoing(topic, key, value, signed(topic, key, value, bank))

    def send(self, messages: list[Outgoing]) -> None:
        producer = make_producer(self.settings, "test-bank")
        send_all(producer, messages, 30)
        producer.close()

    def wait_until(self, predicate: Callable[[], bool], timeout_s: float = DRAIN_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return
            dead = [t.name for t in self.threads if not t.is_alive()]
            if dead:
                raise AssertionError(f"consumer threads died: {dead}")
            time.sleep(0.2)
        raise AssertionError(f"condition not met within {timeout_s}s")

    def stop(self) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(30)


def prepare_ledger(settings: Settings) -> Engine:
    upgrade(settings.ledger_url)
    engine = make_engine(settings.ledger_url)
    load_reference_data(engine, read_file(REFERENCE_FILE))
    return engine


@pytest.fixture
def flow_factory(
    broker: EmbeddedBroker, settings_factory: Callable[..., Settings]
) -> Iterator[Callable[..., Flow]]:
    flows: list[Flow] = []

    def make(
        database_url: str,
        consumers: tuple[str, ...] = ("validator", "settlement", "notification"),
        **overrides: Any,
    ) -> Flow:
        settings = settings_factory(broker.bootstrap_servers, database_url, **overrides)
        create_topics(settings)
        engine = prepare_ledger(settings)
        stop = threading.Event()
        flow = Flow(settings, engine, make_codec(settings, engine), stop)
        flow.threads = run_consumers(settings, consumers, stop) if consumers else []
        flows.append(flow)
        return flow

    yield make
    for flow in flows:
        flow.stop()
        flow.engine.dispose()
