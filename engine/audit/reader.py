"""Read located offset ranges of a topic, partitions merged by record time, memory bounded."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from engine.audit.exceptions import ReplayStalledError
from engine.audit.offsets import PartitionRange

POLL_TIMEOUT_MS = 200
MAX_BUFFERED_PER_PARTITION = 5_000  # a partition far ahead in time is paused beyond this
DEFAULT_STALL_TIMEOUT_S = 30.0


@dataclass
class ReadStats:
    records: int = 0
    timestamps_going_back: int = 0  # records older than the one before them on their partition
    per_partition: dict[int, int] = field(default_factory=dict)


class RangeReader:
    """Yields the records of ``[start, end)`` of every range, oldest record time first.

    Within a partition the order is the log's; across partitions records are merged
    by (timestamp, partition, offset), a deterministic stand-in for the interleaving
    the live consumers happened to see.
    """

    def __init__(
        self,
        consumer: KafkaConsumer,
        topic: str,
        ranges: Sequence[PartitionRange],
        stall_timeout_s: float = DEFAULT_STALL_TIMEOUT_S,
    ) -> None:
        self.consumer = consumer
        self.ranges = {r.partition: r for r in ranges if r.start < r.end}
        self.tps = {p: TopicPartition(topic, p) for p in self.ranges}
        self.stall_timeout_s = stall_timeout_s
        self.stats = ReadStats()
        self._buffers: dict[int, deque[ConsumerRecord]] = {p: deque() for p in self.ranges}
        self._done: set[int] = set()
        self._paused: set[int] = set()
        self._last_ts: dict[int, int] = {}

    def records(self) -> Iterator[ConsumerRecord]:
        if not self.ranges:
            return
        self.consumer.assign(list(self.tps.values()))
        for p, r in self.ranges.items():
            self.consumer.seek(self.tps[p], r.start)
        while True:
            self._fill()
            heads = [p for p, buf in self._buffers.items() if buf]
            if not heads:
                return
            p = min(
                heads, key=lambda q: (self._buffers[q][0].timestamp, q, self._buffers[q][0].offset)
            )
            record = self._buffers[p].popleft()
            self._count(p, record)
            if p in self._paused and len(self._buffers[p]) < MAX_BUFFERED_PER_PARTITION // 2:
                self.consumer.resume(self.tps[p])
                self._paused.discard(p)
            yield record

    def batches(self, size: int) -> Iterator[list[ConsumerRecord]]:
        batch: list[ConsumerRecord] = []
        for record in self.records():
            batch.append(record)
            if len(batch) >= size:
                yield batch
                batch = []
        if batch:
            yield batch

    def _count(self, p: int, record: ConsumerRecord) -> None:
        self.stats.records += 1
        self.stats.per_partition[p] = self.stats.per_partition.get(p, 0) + 1
        if record.timestamp < self._last_ts.get(p, record.timestamp):
            self.stats.timestamps_going_back += 1
        self._last_ts[p] = record.timestamp

    def _fill(self) -> None:
        """Poll until every unfinished partition has a record buffered (or is finished)."""
        deadline = time.monotonic() + self.stall_timeout_s
        while True:
            waiting = [p for p in self.ranges if p not in self._done and not self._buffers[p]]
            if not waiting:
                return
            for p in waiting:
                if self.consumer.position(self.tps[p]) >= self.ranges[p].end:
                    self._finish(p)
            if all(p in self._done for p in waiting):
                return
            if time.monotonic() > deadline:
                late = {
                    p: self.consumer.position(self.tps[p]) for p in waiting if p not in self._done
                }
                raise ReplayStalledError(
                    f"no records for {self.stall_timeout_s:.0f}s from partitions at {late} "
                    f"(ranges end at { {p: self.ranges[p].end for p in late} })"
                )
            polled = self.consumer.poll(timeout_ms=POLL_TIMEOUT_MS)
            for tp, records in polled.items():
                self._take(tp.partition, records)

    def _take(self, p: int, records: list[ConsumerRecord]) -> None:
        if p in self._done or p not in self.ranges:
            return
        end = self.ranges[p].end
        buffer = self._buffers[p]
        for r in records:
            if r.offset >= end:
                self._finish(p)
                break
            buffer.append(r)
            if r.offset == end - 1:
                self._finish(p)
                break
        if p not in self._done and len(buffer) >= MAX_BUFFERED_PER_PARTITION:
            self.consumer.pause(self.tps[p])
            self._paused.add(p)

    def _finish(self, p: int) -> None:
        self._done.add(p)
        self.consumer.pause(self.tps[p])
        self._paused.discard(p)
