"""The cached partitioner must place keys exactly where the Java default partitioner does."""

from __future__ import annotations

from kafka.partitioner.default import DefaultPartitioner

from engine.kafka import partitioner as module
from engine.kafka.partitioner import CachedMurmur2Partitioner


class Cluster:
    def __init__(self, partitions: set[int]):
        self.partitions = partitions

    def topics(self) -> set[str]:
        return {"payments.initiated"}

    def partitions_for_topic(self, _topic: str) -> set[int]:
        return self.partitions

    def available_partitions_for_topic(self, _topic: str) -> set[int]:
        return self.partitions


def test_same_partition_as_the_default_partitioner_for_every_key():
    default, cached = DefaultPartitioner(), CachedMurmur2Partitioner()
    for count in (1, 3, 6, 12):
        cluster = Cluster(set(range(count)))
        for i in range(3000):
            key = f"0077800000{i:014d}".encode()
            expected = default.partition("payments.initiated", key, key, None, None, cluster)
            assert cached.partition("payments.initiated", key, key, None, None, cluster) == expected
            assert cached.partition("payments.initiated", key, key, None, None, cluster) == expected


def test_cache_stays_bounded(monkeypatch):
    monkeypatch.setattr(module, "MAX_CACHED_KEYS", 10)
    cached = CachedMurmur2Partitioner()
    for i in range(100):
        cached.partition("t", None, f"k{i}".encode(), None, None, Cluster({0, 1}))
    assert len(cached._hashes) <= 10
