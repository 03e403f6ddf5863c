"""The outbox: events a stage emits are stored with its effects, produced after the commit.

A redelivered event has no new effect; what it emitted the first time is read back from
here and produced again under the same ids, so a crash between commit and produce
loses nothing downstream and doubles nothing in effect.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, select, tuple_

from engine.config import Settings
from engine.kafka.client import Outgoing
from engine.ledger.models import EmittedEvent
from engine.ledger.queries import select_in
from engine.ledger.recorder import Emitted
from engine.pipeline.contract import Emit
from engine.serialization import AvroCodec


class Outbox:
    """Encodes a stage's events for Kafka, and finds what it emitted for redelivered ones."""

    def __init__(self, consumer: str, codec: AvroCodec, settings: Settings) -> None:
        self.consumer = consumer
        self.codec = codec
        self.settings = settings

    def encode(self, source_event_id: str, emit: Emit) -> tuple[Outgoing, Emitted]:
        """The message to produce, and its outbox row."""
        event, record = emit
        message = Outgoing(
            event.topic(self.settings), event.key(record), self.codec.encode(event.name, record)
        )
        return message, self.row(
            source_event_id, str(record["event_id"]), record.get("payment_id"), message
        )

    def row(
        self, source_event_id: str, event_id: str, payment_id: str | None, message: Outgoing
    ) -> Emitted:
        """The outbox row that keeps ``message`` for a redelivery of ``source_event_id``."""
        return Emitted(
            self.consumer, source_event_id, event_id, payment_id,
            message.topic, message.key, message.value,
        )  # fmt: skip

    def stored(self, conn: Connection, source_ids: Sequence[str]) -> list[Outgoing]:
        """What was emitted for ``source_ids`` the first time, in the order it was stored."""
        if not source_ids:
            return []
        table = EmittedEvent.__table__
        query = select(table.c.id, table.c.topic, table.c.key, table.c.value)
        key = tuple_(table.c.consumer, table.c.source_event_id)
        rows = select_in(conn, query, key, [(self.consumer, s) for s in source_ids])
        return [Outgoing(r.topic, r.key, r.value) for r in sorted(rows, key=lambda r: r.id)]
