"""A thin, typed layer over kafka-python: every client option is set here, on purpose."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from engine.config import Settings
from engine.events import TOPIC_NAMES
from engine.kafka.exceptions import KafkaProducerDeliveryError, TopicSetupError
from engine.kafka.partitioner import CachedMurmur2Partitioner
from engine.kafka.security import kafka_security_options

log = logging.getLogger(__name__)

STAGE_TOPICS = (*TOPIC_NAMES, "dlq")  # every event's topic (engine.events) and the dead letters
TOPIC_CREATE_TIMEOUT_S = 30.0
# Topic configs set when a topic is created. Banks write payments.initiated, so its record
# times are the broker's (LogAppendTime): the validator judges signing keys' validity at a
# time the publisher cannot choose. A broker that ignores the config (the embedded one)
# keeps CreateTime, and the record says so in its timestamp type.
STAGE_TOPIC_CONFIGS: dict[str, dict[str, str]] = {
    "initiated": {"message.timestamp.type": "LogAppendTime"},
}


@dataclass(frozen=True)
class Outgoing:
    """A message to produce: the unit every consumer hands to the producer."""

    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


def make_producer(settings: Settings, client_id: str) -> KafkaProducer:
    """Idempotent producer, ``acks=all``: a retried send never duplicates on the partition."""
    return KafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        max_in_flight_requests_per_connection=5,
        retries=2**31 - 1,  # bounded by delivery_timeout_ms, not by a count
        delivery_timeout_ms=settings.produce_timeout_s * 1000,
        request_timeout_ms=settings.request_timeout_ms,
        linger_ms=settings.linger_ms,
        batch_size=settings.producer_batch_size_bytes,
        max_request_size=settings.max_message_bytes,
        compression_type=None,
        allow_auto_create_topics=False,  # a typo must fail, not create a topic
        partitioner=CachedMurmur2Partitioner(),  # same partitions as the Java default
        **kafka_security_options(settings),
    )


def make_consumer(
    settings: Settings,
    group_id: str | None,
    topics: Sequence[str] = (),
    client_id: str = "sakk",
) -> KafkaConsumer:
    """Consumer with manual offset commits: offsets move only after the ledger commit."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        client_id=client_id,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=settings.heartbeat_interval_ms,
        max_poll_interval_ms=settings.max_poll_interval_ms,
        max_poll_records=settings.batch_max_records,
        fetch_max_bytes=settings.fetch_max_bytes,
        fetch_min_bytes=1,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        max_partition_fetch_bytes=max(settings.max_message_bytes, 1024 * 1024),
        request_timeout_ms=max(settings.request_timeout_ms, settings.session_timeout_ms + 5000),
        allow_auto_create_topics=False,
        **kafka_security_options(settings),
    )
    if topics:
        consumer.subscribe(list(topics))
    return consumer


@dataclass(frozen=True)
class Delivery:
    """Where the broker put an acknowledged message."""

    topic: str
    partition: int
    offset: int


def send_all(producer: KafkaProducer, messages: Iterable[Outgoing], timeout_s: float) -> int:
    """Produce ``messages`` and wait until the broker acknowledged every one.

    Raises :class:`KafkaProducerDeliveryError` when any is not acknowledged within
    ``timeout_s``: the caller must then not commit its input offsets.
    """
    return len(_send_and_wait(producer, messages, timeout_s))


def deliver_all(
    producer: KafkaProducer, messages: Iterable[Outgoing], timeout_s: float
) -> list[Delivery]:
    """Like :func:`send_all`, and say where each message landed (in the order given)."""
    futures = _send_and_wait(producer, messages, timeout_s)
    return [Delivery(f.value.topic, f.value.partition, f.value.offset) for f in futures]


def _send_and_wait(
    producer: KafkaProducer, messages: Iterable[Outgoing], timeout_s: float
) -> list[Any]:
    futures = [
        producer.send(m.topic, key=m.key, value=m.value, headers=list(m.headers) or None)
        for m in messages
    ]
    if not futures:
        return futures
    producer.flush(timeout=timeout_s)
    for future in futures:
        if not future.is_done:
            raise KafkaProducerDeliveryError(f"produce not acknowledged within {timeout_s:.0f}s")
        if future.failed():
            raise KafkaProducerDeliveryError(f"produce failed: {future.exception!r}")
    return futures


def make_admin(settings: Settings, client_id: str) -> KafkaAdminClient:
    """Admin client (topics, group offsets) on the same transport as every other client."""
    return KafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        client_id=client_id,
        request_timeout_ms=settings.request_timeout_ms,
        **kafka_security_options(settings),
    )


def topic_configs(settings: Settings, topic: str) -> dict[str, str]:
    """The configs ``create_topics`` gives ``topic`` (see STAGE_TOPIC_CONFIGS)."""
    for stage, configs in STAGE_TOPIC_CONFIGS.items():
        if topic == settings.topic(stage):
            return dict(configs)
    return {}


def all_topics(settings: Settings) -> list[str]:
    return [settings.topic(name) for name in STAGE_TOPICS]


def create_topics(settings: Settings, names: Iterable[str] | None = None) -> list[str]:
    """Create the topics that are missing; existing ones are left as they are.

    Returns the names that were created.
    """
    names = list(names or all_topics(settings))
    try:
        admin = make_admin(settings, "sakk-admin")
    except KafkaError as exc:
        raise TopicSetupError(f"cannot reach {settings.kafka_bootstrap_servers}: {exc}") from exc
    try:
        existing = set(admin.list_topics())
        missing = [n for n in names if n not in existing]
        for name in missing:
            partitions = settings.topic_partitions
            with contextlib.suppress(TopicAlreadyExistsError):  # made meanwhile by another process
                admin.create_topics(
                    [
                        NewTopic(
                            name,
                            partitions,
                            settings.topic_replication_factor,
                            topic_configs=topic_configs(settings, name),
                        )
                    ],
                    timeout_ms=int(TOPIC_CREATE_TIMEOUT_S * 1000),
                )
        _wait_for_metadata(admin, names)
        return missing
    finally:
        admin.close()


def _wait_for_metadata(admin: KafkaAdminClient, names: list[str]) -> None:
    deadline = time.monotonic() + TOPIC_CREATE_TIMEOUT_S
    while time.monotonic() < deadline:
        if set(names) <= set(admin.list_topics()):
            return
        time.sleep(0.1)
    raise TopicSetupError(f"topics {names} not visible after {TOPIC_CREATE_TIMEOUT_S:.0f}s")


def end_offsets(consumer: KafkaConsumer, partitions: Sequence[TopicPartition]) -> dict:
    return consumer.end_offsets(list(partitions)) if partitions else {}


def partitions_of(consumer: KafkaConsumer, topic: str) -> list[TopicPartition]:
    ids = consumer.partitions_for_topic(topic) or set()
    return [TopicPartition(topic, p) for p in sorted(ids)]
