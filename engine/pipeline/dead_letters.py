"""The dead-letter message: the original bytes, with why and where from in its headers."""

from __future__ import annotations

from engine.kafka.client import Outgoing
from engine.pipeline.messages import RawMessage

SECURITY_KIND = "security"  # dead-letter kind of a message refused by a stage's gate
POISON_KIND = "poison"  # a message whose handling raised alone, or that killed its consumer
CORRUPT_BATCH_KIND = "corrupt_batch"  # a record batch the client could not read (bad CRC)
DLQ_HEADROOM_BYTES = 64 * 1024  # room for headers when a huge message is dead-lettered
REASON_MAX_CHARS = 1000


def dead_letter_message(
    m: RawMessage, kind: str, reason: str, consumer: str, dlq_topic: str, max_message_bytes: int
) -> Outgoing:
    """``m`` for the dead-letter topic; a message too large is cut, and says so."""
    value = m.value or b""
    limit = max_message_bytes - DLQ_HEADROOM_BYTES
    headers = [
        ("sakk.reason", reason.encode()),
        ("sakk.kind", kind.encode()),
        ("sakk.consumer", consumer.encode()),
        ("sakk.source.topic", m.topic.encode()),
        ("sakk.source.partition", str(m.partition).encode()),
        ("sakk.source.offset", str(m.offset).encode()),
    ]
    if len(value) > limit:
        headers.append(("sakk.truncated_from_bytes", str(len(value)).encode()))
        value = value[:limit]
    return Outgoing(dlq_topic, m.key or b"", value, tuple(headers))
