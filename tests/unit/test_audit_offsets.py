"""Finding offsets by time on a broker that answers ListOffsets wrongly."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kafka import TopicPartition
from kafka.structs import OffsetAndTimestamp

from engine.audit.offsets import OffsetLocator, locate_by_offsets, locate_by_time

TOPIC = "t.initiated"


@dataclass
class Rec:
    offset: int
    timestamp: int


class FakeBroker:
    """A consumer over in-memory partitions; its ListOffsets answers are whatever we say."""

    def __init__(
        self,
        logs: dict[int, list[tuple[int, int]]],
        by_time: Any = None,
        claimed_end: dict[int, int] | None = None,
    ):
        self.logs = {p: [Rec(o, t) for o, t in recs] for p, recs in logs.items()}
        self.by_time = by_time  # callable(partition, ts) -> offset | None, the broker's answer
        self.claimed_end = claimed_end or {}
        self.positions: dict[TopicPartition, int] = {}
        self.assigned: list[TopicPartition] = []

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(self.logs)

    def assign(self, tps: list[TopicPartition]) -> None:
        self.assigned = list(tps)

    def _end(self, p: int) -> int:
        recs = self.logs[p]
        return recs[-1].offset + 1 if recs else 0

    def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {
            tp: (self.logs[tp.partition][0].offset if self.logs[tp.partition] else 0) for tp in tps
        }

    def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.claimed_end.get(tp.partition, self._end(tp.partition)) for tp in tps}

    def highwater(self, tp: TopicPartition) -> int:
        return self._end(tp.partition)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    def position(self, tp: TopicPartition) -> int:
        return self.positions.get(tp, 0)

    def poll(self, timeout_ms: int = 0, max_records: int = 500) -> dict[TopicPartition, list[Rec]]:
        out = {}
        for tp in self.assigned:
            pos = self.positions.get(tp, 0)
            recs = [r for r in self.logs[tp.partition] if r.offset >= pos][:max_records]
            if recs:
                out[tp] = recs
                self.positions[tp] = recs[-1].offset + 1
        return out

    def offsets_for_times(self, query: dict[TopicPartition, int]) -> dict[TopicPartition, Any]:
        answers = {}
        for tp, ts in query.items():
            offset = self.by_time(tp.partition, ts) if self.by_time else None
            answers[tp] = None if offset is None else OffsetAndTimestamp(offset, ts, 0)
        return answers


def log_of(n: int, start_ms: int = 1_000, step_ms: int = 10) -> list[tuple[int, int]]:
    return [(o, start_ms + o * step_ms) for o in range(n)]


def test_a_broker_answering_offset_zero_for_any_time_is_disproved_and_searched():
    broker = FakeBroker({0: log_of(100)}, by_time=lambda p, ts: 0)
    ranges = locate_by_time(OffsetLocator(broker, TOPIC), 1_000 + 250, 1_000 + 700)
    assert [(r.start, r.end, r.located_by) for r in ranges] == [(25, 70, "search")]


def test_a_right_answer_from_the_broker_is_proved_and_kept():
    def kafka(p: int, ts: int) -> int | None:
        return next((o for o, t in log_of(100) if t >= ts), None)

    locator = OffsetLocator(FakeBroker({0: log_of(100)}, by_time=kafka), TOPIC)
    ranges = locate_by_time(locator, 1_000 + 255, None)
    assert [(r.start, r.end, r.located_by) for r in ranges] == [(26, 100, "broker")]
    assert locator.probes == 2  # the record at the answer and the one before it


def test_a_time_after_every_record_gives_an_empty_range_at_the_end():
    broker = FakeBroker({0: log_of(10), 1: []}, by_time=lambda p, ts: 0)
    ranges = locate_by_time(OffsetLocator(broker, TOPIC), 10**9, None)
    assert [(r.start, r.end) for r in ranges] == [(10, 10), (0, 0)]


def test_gaps_in_offsets_are_searched_over():
    compacted = [(o, 1_000 + o) for o in range(0, 200, 3)]  # 0, 3, 6, ...
    broker = FakeBroker({0: compacted}, by_time=lambda p, ts: 1)
    [r] = locate_by_time(OffsetLocator(broker, TOPIC), 1_000 + 100, 1_000 + 151)
    inside = [o for o, _ in compacted if r.start <= o < r.end]
    assert inside == list(range(102, 151, 3))


def test_the_end_of_a_partition_is_the_fetch_high_watermark_not_the_claimed_end():
    broker = FakeBroker({0: log_of(14)}, claimed_end={0: 8})  # Tansu: last batch's base + 1
    [r] = locate_by_offsets(OffsetLocator(broker, TOPIC), {}, {})
    assert (r.start, r.end, r.from_beginning) == (0, 14, True)


def test_offsets_given_are_clamped_to_the_log():
    broker = FakeBroker({0: log_of(50), 1: log_of(5)})
    ranges = locate_by_offsets(OffsetLocator(broker, TOPIC), {0: 10}, {0: 500, 1: 3})
    assert [(r.start, r.end, r.located_by) for r in ranges] == [
        (10, 50, "offsets"),
        (0, 3, "offsets"),
    ]
