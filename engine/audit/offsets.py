"""Offsets of a range of a topic, found so that they are right on any broker.

A broker's ``ListOffsets`` answers are checked against the records themselves
before they are trusted. The embedded broker (Tansu) answers both kinds wrongly:
by timestamp it returns offset 0 whatever the time, and "latest" returns the
base offset of the last record batch plus one, not the end of the log. So:

- the end of a partition is the high watermark of a fetch response, never less
  than what ``ListOffsets`` claimed;
- the first offset at or after a time is the broker's answer if the records at
  that offset and just before it prove it right, else a binary search over the
  record timestamps (seek, fetch one record) of the partition.

The binary search assumes record timestamps do not decrease along a partition,
which holds for ``LogAppendTime`` and for ``CreateTime`` with producers whose
clocks agree; the replay counts the records that break it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from engine.audit.exceptions import OffsetLookupError

log = logging.getLogger(__name__)

PROBE_POLL_MS = 100
PROBE_TIMEOUT_S = 15.0  # to fetch one record that the high watermark says exists
MAX_SEARCH_STEPS = 80  # log2 of any offset range (2**63) with room to spare


@dataclass(frozen=True, slots=True)
class Probe:
    """One record found by a probe: where it is and its timestamp."""

    offset: int
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class PartitionRange:
    """Offsets ``[start, end)`` of one partition, and how they were found."""

    partition: int
    start: int
    end: int
    log_start: int  # first offset the partition held when the range was located
    located_by: str  # offsets | broker | search | log-start | log-end

    @property
    def from_beginning(self) -> bool:
        return self.start <= self.log_start

    def as_dict(self) -> dict[str, int | str | bool]:
        return {"partition": self.partition, "start": self.start, "end": self.end,
                "log_start": self.log_start, "located_by": self.located_by,
                "from_beginning": self.from_beginning}  # fmt: skip


class OffsetLocator:
    """Finds offsets on one topic with a group-less consumer: it joins no group, commits nothing."""

    def __init__(
        self, consumer: KafkaConsumer, topic: str, probe_timeout_s: float = PROBE_TIMEOUT_S
    ):
        self.consumer = consumer
        self.topic = topic
        self.probe_timeout_s = probe_timeout_s
        self.probes = 0  # records fetched to check or search (for the report)

    def partitions(self) -> list[TopicPartition]:
        ids = self.consumer.partitions_for_topic(self.topic)
        if not ids:
            raise OffsetLookupError(f"topic {self.topic} does not exist or has no partitions")
        return [TopicPartition(self.topic, p) for p in sorted(ids)]

    def bounds(self, tp: TopicPartition) -> tuple[int, int]:
        """(log start offset, end offset) of ``tp``; the end from a fetch's high watermark."""
        self.consumer.assign([tp])
        try:
            start = self.consumer.beginning_offsets([tp])[tp]
            claimed_end = self.consumer.end_offsets([tp])[tp]
        except KafkaError as exc:
            raise OffsetLookupError(
                f"{tp.topic}[{tp.partition}]: ListOffsets failed: {exc}"
            ) from exc
        self.consumer.seek(tp, max(claimed_end - 1, start))
        deadline = time.monotonic() + self.probe_timeout_s
        high = self.consumer.highwater(tp)
        while high is None or high < claimed_end:
            if time.monotonic() > deadline:
                raise OffsetLookupError(
                    f"{tp.topic}[{tp.partition}]: no fetch response within "
                    f"{self.probe_timeout_s:.0f}s"
                )
            self.consumer.poll(timeout_ms=PROBE_POLL_MS, max_records=1)
            high = self.consumer.highwater(tp)
        if high != claimed_end:
            log.info(
                "%s[%d]: broker said the log ends at %d, a fetch says %d",
                tp.topic,
                tp.partition,
                claimed_end,
                high,
            )
        return start, max(high, claimed_end)

    def record_at_or_after(self, tp: TopicPartition, offset: int, end: int) -> Probe | None:
        """The first record at ``offset`` or later and before ``end``; None when there is none."""
        if offset >= end:
            return None
        self.probes += 1
        self.consumer.seek(tp, offset)
        deadline = time.monotonic() + self.probe_timeout_s
        while time.monotonic() < deadline:
            records = self.consumer.poll(timeout_ms=PROBE_POLL_MS, max_records=1).get(tp)
            if records:
                r = records[0]
                return Probe(r.offset, r.timestamp) if r.offset < end else None
            if self.consumer.position(tp) >= end:
                return None  # only control records (transaction markers) were left
        raise OffsetLookupError(
            f"{tp.topic}[{tp.partition}]: no record at or after offset {offset} "
            f"within {self.probe_timeout_s:.0f}s although the log ends at {end}"
        )

    def first_at_or_after_time(
        self, tp: TopicPartition, timestamp_ms: int, log_start: int, end: int
    ) -> tuple[int, str]:
        """(first offset whose record timestamp is >= ``timestamp_ms``, how it was found)."""
        answer = self._ask_broker(tp, timestamp_ms)
        claimed = end if answer is None else answer
        if self._proves_first_at_or_after(tp, claimed, timestamp_ms, log_start, end):
            return claimed, "broker"
        log.info(
            "%s[%d]: broker answered offset %s for time %d, which the records disprove; searching",
            tp.topic,
            tp.partition,
            answer,
            timestamp_ms,
        )
        return self._search(tp, timestamp_ms, log_start, end), "search"

    def _ask_broker(self, tp: TopicPartition, timestamp_ms: int) -> int | None:
        try:
            found = self.consumer.offsets_for_times({tp: timestamp_ms}).get(tp)
        except (KafkaError, ValueError) as exc:
            log.info(
                "%s[%d]: ListOffsets by time failed (%s); searching", tp.topic, tp.partition, exc
            )
            return -1  # never proven right: forces the search
        return None if found is None else int(found.offset)

    def _proves_first_at_or_after(
        self, tp: TopicPartition, offset: int, timestamp_ms: int, log_start: int, end: int
    ) -> bool:
        """True when the record at ``offset`` is at or after the time and the one before is not."""
        if not log_start <= offset <= end:
            return False
        at = self.record_at_or_after(tp, offset, end)
        if at is not None and at.timestamp_ms < timestamp_ms:
            return False
        if offset == log_start:
            return True
        before = self.record_at_or_after(tp, offset - 1, end)
        return (
            before is not None
            and before.offset == offset - 1
            and before.timestamp_ms < timestamp_ms
        )

    def _search(self, tp: TopicPartition, timestamp_ms: int, log_start: int, end: int) -> int:
        lo, hi = log_start, end
        for _step in range(MAX_SEARCH_STEPS):
            if lo >= hi:
                return lo
            mid = (lo + hi) // 2
            found = self.record_at_or_after(tp, mid, hi)
            if found is None or found.timestamp_ms >= timestamp_ms:
                hi = mid
            else:
                lo = found.offset + 1
        raise OffsetLookupError(
            f"{tp.topic}[{tp.partition}]: search for time {timestamp_ms} did "
            f"not converge in {MAX_SEARCH_STEPS} steps"
        )


def locate_by_offsets(
    locator: OffsetLocator, from_offsets: dict[int, int], to_offsets: dict[int, int]
) -> list[PartitionRange]:
    """Ranges from explicit offsets; a partition not named runs from its start to its end."""
    partitions = locator.partitions()
    known = {tp.partition for tp in partitions}
    unknown = sorted((set(from_offsets) | set(to_offsets)) - known)
    if unknown:
        raise OffsetLookupError(
            f"{locator.topic} has no partition {unknown}; it has {sorted(known)}"
        )
    ranges = []
    for tp in partitions:
        log_start, end = locator.bounds(tp)
        start = max(from_offsets.get(tp.partition, log_start), log_start)
        stop = min(to_offsets.get(tp.partition, end), end)
        named = tp.partition in from_offsets or tp.partition in to_offsets
        ranges.append(
            PartitionRange(
                tp.partition,
                start,
                max(start, stop),
                log_start,
                "offsets" if named else "log-start",
            )
        )
    return ranges


def locate_by_time(
    locator: OffsetLocator, from_ms: int | None, to_ms: int | None
) -> list[PartitionRange]:
    """Per partition: [first offset at or after ``from_ms``, first offset at or after ``to_ms``)."""
    ranges = []
    for tp in locator.partitions():
        log_start, end = locator.bounds(tp)
        start, how = (log_start, "log-start") if from_ms is None else \
            locator.first_at_or_after_time(tp, from_ms, log_start, end)  # fmt: skip
        if to_ms is None:
            stop = end
        else:
            stop, stop_how = locator.first_at_or_after_time(tp, to_ms, start, end)
            how = how if how == "search" else stop_how
        ranges.append(PartitionRange(tp.partition, start, max(start, stop), log_start, how))
    return ranges
