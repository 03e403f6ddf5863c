"""Schema evolution through Kafka: an old consumer learns a newer writer schema from the store."""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kafka import TopicPartition

from engine.config import Settings
from engine.kafka.client import create_topics, make_consumer, make_producer, schema_topic
from engine.kafka.embedded import EmbeddedBroker
from engine.serialization import (
    EVENT_TYPES,
    AvroCodec,
    KafkaSchemaStore,
    SchemaRegistry,
    SchemaStoreError,
    UnknownSchemaError,
    register_current_schemas,
)

pytestmark = pytest.mark.integration

RECEIVE_TIMEOUT_S = 15.0
INITIATED: dict[str, Any] = {
    "event_id": "5b0f3c1e-7d2a-4c8e-9f10-2a6b8c4d1e01",
    "payment_id": "9e4d2b7a-1c3f-4a5b-8d6e-0f1a2b3c4d5e",
    "bank_reference": "BCP-20261126-000417",
    "occurred_at": datetime(2026, 11, 26, 9, 30, 15, 123000, tzinfo=UTC),
    "payer_bank": "190",
    "payer_account": "190780211234567890123456",
    "payee_bank": "011",
    "payee_account": "011780000098765432109876",
    "amount_minor": 125_000,
    "currency": "MAD",
    "channel": "MOBILE",
    "payment_type": "TRANSFER",
    "merchant_category_code": None,
    "egov_service": None,
    "intent": "SALE",
    "remittance_info": None,
}


def initiated_schema(version: int) -> dict[str, Any]:
    """PaymentInitiated as on disk (v1), or v2 with an added optional ``device_id``."""
    schema = json.loads((Settings().schemas_dir / EVENT_TYPES["PaymentInitiated"]).read_text())
    if version == 2:
        schema["fields"].append({"name": "device_id", "type": ["null", "string"], "default": None})
    return schema


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as running:
        yield running


@pytest.fixture
def settings(broker: EmbeddedBroker) -> Settings:
    """Settings with a topic prefix of its own: each test gets its own topics."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    settings = Settings(kafka_bootstrap_servers=broker.bootstrap_servers, topic_prefix=prefix)
    create_topics(settings, [settings.topic("initiated"), schema_topic(settings)])
    return settings


@pytest.fixture
def store_factory(settings: Settings) -> Iterator[Callable[[], KafkaSchemaStore]]:
    stores: list[KafkaSchemaStore] = []

    def make() -> KafkaSchemaStore:
        stores.append(KafkaSchemaStore(settings, fetch_timeout_s=10))
        return stores[-1]

    yield make
    for store in stores:
        store.close()


@pytest.fixture
def v2_schemas_dir(tmp_path: Path) -> Path:
    """The schema directory of a newer producer: PaymentInitiated has ``device_id``."""
    for name in EVENT_TYPES.values():
        shutil.copy(Settings().schemas_dir / name, tmp_path / name)
    (tmp_path / EVENT_TYPES["PaymentInitiated"]).write_text(json.dumps(initiated_schema(2)))
    return tmp_path


def produce(settings: Settings, value: bytes) -> None:
    producer = make_producer(settings, client_id="test-bank")
    try:
        producer.send(settings.topic("initiated"), key=b"190780211234567890123456", value=value)
        producer.flush(timeout=RECEIVE_TIMEOUT_S)
    finally:
        producer.close(timeout=5)


def receive_one(settings: Settings) -> bytes:
    """The first message of the initiated topic, read without a consumer group."""
    consumer = make_consumer(settings, group_id=None, client_id="test-old-consumer")
    try:
        topic = settings.topic("initiated")
        consumer.assign([TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)])
        deadline = time.monotonic() + RECEIVE_TIMEOUT_S
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                return records[0].value
        raise AssertionError(f"no message on {topic} within {RECEIVE_TIMEOUT_S:.0f}s")
    finally:
        consumer.close(autocommit=False)


def test_old_consumer_decodes_a_v2_message_by_learning_the_schema_from_kafka(
    settings: Settings,
    store_factory: Callable[[], KafkaSchemaStore],
    v2_schemas_dir: Path,
) -> None:
    producer_codec = AvroCodec(SchemaRegistry.from_dir(v2_schemas_dir))
    published = register_current_schemas(producer_codec, store_factory())
    record_v2 = {**INITIATED, "device_id": "android-7f3a"}
    produce(settings, producer_codec.encode("PaymentInitiated", record_v2, validate=True))
    old_store = store_factory()
    old_codec = AvroCodec(SchemaRegistry.from_dir(settings.schemas_dir), store=old_store)

    decoded = old_codec.decode(receive_one(settings))

    assert decoded.event_type == "PaymentInitiated"
    assert decoded.record == INITIATED  # device_id dropped, timestamps intact
    assert decoded.fingerprint == producer_codec.registry.fingerprint_of("PaymentInitiated")
    assert decoded.fingerprint in published
    assert decoded.fingerprint != old_codec.registry.fingerprint_of("PaymentInitiated")


def test_decode_when_fingerprint_in_no_store_raises_unknown_schema_after_refresh(
    settings: Settings, store_factory: Callable[[], KafkaSchemaStore]
) -> None:
    codec_v1 = AvroCodec(SchemaRegistry.from_dir(settings.schemas_dir))
    register_current_schemas(codec_v1, store_factory())
    data = codec_v1.encode("PaymentInitiated", INITIATED)
    stranger = data[:2] + bytes.fromhex("deadbeefdeadbeef") + data[10:]
    store = store_factory()
    codec = AvroCodec(SchemaRegistry.from_dir(settings.schemas_dir), store=store)

    with pytest.raises(UnknownSchemaError, match="deadbeefdeadbeef") as caught:
        codec.decode(stranger)

    assert caught.value.kind == "unknown_schema"
    assert len(store.fetch_all()) == len(EVENT_TYPES)  # the store was readable all along


def test_publish_twice_in_one_process_writes_the_schema_once(
    settings: Settings, store_factory: Callable[[], KafkaSchemaStore]
) -> None:
    store = store_factory()
    schema = initiated_schema(1)

    first, second = store.publish(schema), store.publish(json.dumps(schema))

    assert first == second
    assert list(store.fetch_all()) == [first]


def test_fetch_all_of_an_empty_store_returns_nothing(
    store_factory: Callable[[], KafkaSchemaStore],
) -> None:
    assert store_factory().fetch_all() == {}


def test_store_when_topic_missing_raises_and_creates_nothing(broker: EmbeddedBroker) -> None:
    settings = Settings(kafka_bootstrap_servers=broker.bootstrap_servers, topic_prefix="absent")
    store = KafkaSchemaStore(settings)
    try:
        with pytest.raises(SchemaStoreError, match="absent._schemas does not exist"):
            store.fetch_all()
        with pytest.raises(SchemaStoreError, match="absent._schemas does not exist"):
            store.publish(initiated_schema(1))
    finally:
        store.close()
    assert create_topics(settings, [schema_topic(settings)]) == ["absent._schemas"]
