"""What a stage reads: a message as the broker gave it, and the event decoded from it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.ledger.dead_letters import dead_letter_event_id
from engine.trust.signing import Evidence


@dataclass(frozen=True, slots=True)
class RawMessage:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int
    headers: tuple[tuple[str, bytes | None], ...] = ()
    timestamp_type: int = 0  # 0 CreateTime (the producer's), 1 LogAppendTime (the broker's)

    @classmethod
    def of(cls, record: Any) -> RawMessage:
        """From a kafka-python ConsumerRecord."""
        return cls(
            record.topic, record.partition, record.offset, record.key, record.value,
            record.timestamp, tuple(record.headers or ()), record.timestamp_type,
        )  # fmt: skip

    @property
    def coordinates(self) -> tuple[str, int, int]:
        return (self.topic, self.partition, self.offset)

    @property
    def dead_letter_id(self) -> str:
        """The id a dead letter of this message is recorded under: its coordinates."""
        return dead_letter_event_id(self.topic, self.partition, self.offset)


@dataclass(frozen=True, slots=True)
class Inbound:
    """One decoded event, the message it came from, and its verified signature (if gated)."""

    raw: RawMessage
    event_type: str
    record: dict[str, Any]
    signature: Evidence | None = None

    @property
    def event_id(self) -> str:
        return str(self.record["event_id"])

    @property
    def topic(self) -> str:
        return self.raw.topic

    @property
    def partition(self) -> int:
        return self.raw.partition

    @property
    def offset(self) -> int:
        return self.raw.offset

    @property
    def timestamp_ms(self) -> int:
        return self.raw.timestamp_ms
