"""Record batches the client cannot read (bad CRC): where they are, where the next one starts.

kafka-python's fetcher checks each record batch's CRC as it unpacks a fetch
(``PartitionRecords._unpack_records``) and raises ``CorruptRecordError`` from
``poll`` with the message "Record batch for partition TopicPartition(topic='t',
partition=0) at offset B failed crc check", B being the batch's base offset; the
consumer's position stays where it was, so every later poll raises it again. A fetch
from any offset inside the batch returns the whole batch (and the same error, with
the same base offset), so the first readable offset after it is found by probing: a
fetch at offset o is "the same corrupt batch" for every o up to the batch's last
offset and not after, a monotone predicate, searched by galloping then bisection
(:func:`next_readable_offset`, a few probes even for a batch of 100,000 records).
The probes use a consumer of their own, outside the group, so the stage's consumer
and its position are untouched until the range is dead-lettered.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import CorruptRecordError

from engine.config import Settings
from engine.kafka.security import kafka_security_options

MAX_PROBES = 64  # galloping then bisecting: 2 * log2(a batch's offsets) is far below
PROBE_TIMEOUT_MS = 2_000  # one fetch; an empty answer is retried, then taken as past it
PROBE_EMPTY_RETRIES = 3

_MESSAGE = re.compile(
    r"partition TopicPartition\(topic='(?P<topic>[^']+)', partition=(?P<partition>\d+)\)"
    r" at offset (?P<offset>\d+)"
)


class UnreadableBatchError(Exception):
    """The corrupt batch's place could not be read from the client's error."""


@dataclass(frozen=True, slots=True)
class CorruptBatch:
    """Where the client found an unreadable record batch: its partition and base offset."""

    topic: str
    partition: int
    base_offset: int


def corrupt_batch_of(exc: CorruptRecordError) -> CorruptBatch:
    """The partition and base offset the fetcher names in its error."""
    match = _MESSAGE.search(str(exc))
    if match is None:
        raise UnreadableBatchError(f"no partition and offset in {exc!s}")
    return CorruptBatch(match["topic"], int(match["partition"]), int(match["offset"]))


# A probe's answer at an offset: the base offset of the corrupt batch a fetch there
# returned, or None when the fetch read records (or nothing: the end).
Probe = Callable[[int], int | None]


def next_readable_offset(base_offset: int, start: int, end: int, probe: Probe) -> int:
    """The first offset past the corrupt batch at ``base_offset`` (``end`` at the latest).

    ``start``: the offset whose fetch raised (inside that batch); ``end``: the high
    watermark. Galloping then bisection keep two offsets: ``inside`` (a fetch there
    returns the corrupt batch) and ``outside`` (it does not, or the end); they close
    in on the batch's last offset and the one after it. Another corrupt batch right
    after this one is not skipped here: the stage meets it next and skips it alike.
    """
    inside = max(start, base_offset)
    if inside >= end:
        return inside + 1  # the client raised for offsets the broker says are not there
    step, probes = 1, 0
    outside = end
    while inside + step < end:  # gallop until past the batch (or at the end)
        probes += 1
        if _probe_bounded(probe, inside + step, probes) != base_offset:
            outside = inside + step
            break
        inside, step = inside + step, step * 2
    while outside - inside > 1:
        middle = (inside + outside) // 2
        probes += 1
        if _probe_bounded(probe, middle, probes) == base_offset:
            inside = middle
        else:
            outside = middle
    return outside


def _probe_bounded(probe: Probe, offset: int, probes: int) -> int | None:
    if probes > MAX_PROBES:
        raise UnreadableBatchError(f"no end of the corrupt batch found in {MAX_PROBES} probes")
    return probe(offset)


class BatchProber:
    """Fetches one partition at chosen offsets with a consumer of its own (no group)."""

    def __init__(self, settings: Settings, topic: str, partition: int) -> None:
        self.tp = TopicPartition(topic, partition)
        self.consumer = KafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            client_id="sakk-corrupt-probe",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="none",
            isolation_level="read_committed",
            check_crcs=True,
            fetch_max_wait_ms=min(settings.fetch_max_wait_ms, 500),
            max_partition_fetch_bytes=max(settings.max_message_bytes, 1024 * 1024),
            request_timeout_ms=max(settings.request_timeout_ms, PROBE_TIMEOUT_MS + 5_000),
            **kafka_security_options(settings),
        )
        self.consumer.assign([self.tp])

    def high_watermark(self) -> int:
        return int(self.consumer.end_offsets([self.tp])[self.tp])

    def __call__(self, offset: int) -> int | None:
        self.consumer.seek(self.tp, offset)
        for _ in range(PROBE_EMPTY_RETRIES):
            try:
                if self.consumer.poll(timeout_ms=PROBE_TIMEOUT_MS, max_records=1).get(self.tp):
                    return None
            except CorruptRecordError as exc:
                return corrupt_batch_of(exc).base_offset
            self.consumer.seek(self.tp, offset)
        return None

    def close(self) -> None:
        self.consumer.close()
