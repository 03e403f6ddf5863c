"""Finding where an unreadable record batch ends, by probing fetches (no broker here)."""

from __future__ import annotations

import pytest
from kafka.errors import CorruptRecordError

from engine.kafka.corrupt import (
    MAX_PROBES,
    CorruptBatch,
    UnreadableBatchError,
    corrupt_batch_of,
    next_readable_offset,
)


class Partition:
    """A partition of record batches, some corrupt: a fetch at o returns the batch holding o."""

    def __init__(self, batches: list[tuple[int, int, bool]]) -> None:
        self.batches = batches  # (base offset, last offset, corrupt)
        self.probes: list[int] = []

    def __call__(self, offset: int) -> int | None:
        self.probes.append(offset)
        for base, last, corrupt in self.batches:
            if base <= offset <= last:
                return base if corrupt else None
        return None  # past the end: nothing fetched


@pytest.mark.parametrize(
    ("batches", "start", "end", "expected"),
    [
        ([(0, 0, False), (1, 3, True), (4, 4, False)], 1, 5, 4),  # as reproduced on the broker
        ([(0, 0, True), (1, 9, False)], 0, 10, 1),  # one record
        ([(5, 99_999, True), (100_000, 100_010, False)], 5, 100_011, 100_000),  # huge batch
        ([(0, 6, True)], 0, 7, 7),  # the last batch: skip to the high watermark
        ([(0, 2, True), (3, 8, True), (9, 9, False)], 0, 10, 3),  # the next one is met next
        ([(2, 4, True), (5, 5, False)], 3, 6, 5),  # positioned inside the batch
    ],
)
def test_the_first_offset_after_the_corrupt_batch_is_found(batches, start, end, expected):
    partition = Partition(batches)
    base = next(b for b, last, _ in batches if b <= start <= last)
    assert next_readable_offset(base, start, end, partition) == expected
    assert len(partition.probes) <= 2 * 18  # galloping and bisecting: logarithmic


def test_a_probe_that_never_leaves_the_batch_is_bounded():
    with pytest.raises(UnreadableBatchError):
        next_readable_offset(0, 0, 2**80, lambda _offset: 0)
    assert MAX_PROBES < 100


def test_the_place_of_a_corrupt_batch_is_read_from_the_clients_error():
    # The message kafka-python 3's fetcher raises (kafka/consumer/fetcher.py).
    exc = CorruptRecordError(
        "Record batch for partition TopicPartition(topic='p.initiated', partition=2) "
        "at offset 17 failed crc check"
    )
    assert corrupt_batch_of(exc) == CorruptBatch("p.initiated", 2, 17)


def test_an_error_without_a_place_is_refused_by_name():
    with pytest.raises(UnreadableBatchError):
        corrupt_batch_of(CorruptRecordError("something else"))
