"""Consumer lag as the broker knows it: each group's committed offsets against the ends.

For each consumer group and the topics it reads: per topic, the sum over its partitions
of the end offset minus the group's committed offset (a partition the group never
committed counts from its beginning). Asked with a bound: the broker's answer is waited
for at most ``timeout_s``; past it, or when the broker refuses, the lag is unknown and
says why, and nothing hangs. One lookup at a time: while one is still waiting on a
silent broker, another answers "unknown" at once instead of piling threads up.

On the embedded broker (Tansu) ``ListOffsets(latest)`` answers the last batch's base
offset + 1, so the end, and the lag, read short when a producer batched several records.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

from kafka import TopicPartition

from engine.config import Settings
from engine.kafka.client import make_admin, make_consumer, partitions_of

MAX_LAG_TIMEOUT_S = 30.0
_LOOKING = threading.Lock()


@dataclass(frozen=True)
class GroupLag:
    group: str
    topics: dict[str, int] | None  # topic -> messages not yet committed; None: unknown
    unknown: str | None = None  # why the lag is unknown

    @property
    def total(self) -> int | None:
        return None if self.topics is None else sum(self.topics.values())


def group_lags(
    settings: Settings, wanted: Mapping[str, Sequence[str]], timeout_s: float
) -> dict[str, GroupLag]:
    """The lag of each group of ``wanted`` (group -> the topics it reads), bounded in time."""
    if not 0 < timeout_s <= MAX_LAG_TIMEOUT_S:
        raise ValueError(f"timeout_s={timeout_s}: expected 0..{MAX_LAG_TIMEOUT_S}")
    if settings.uses_embedded_broker:
        return _unknown(wanted, "no broker configured (set SAKK_KAFKA_BOOTSTRAP_SERVERS)")
    if not _LOOKING.acquire(blocking=False):
        return _unknown(wanted, "the previous lookup is still waiting on the broker")
    answer: Future[dict[str, GroupLag]] = Future()

    def look() -> None:
        try:
            answer.set_result(_lags(settings, wanted))
        except Exception as exc:  # any broker error: the lag is unknown, with it
            answer.set_exception(exc)
        finally:
            _LOOKING.release()

    threading.Thread(target=look, name="sakk-lag", daemon=True).start()
    try:
        return answer.result(timeout=timeout_s)
    except TimeoutError:
        return _unknown(wanted, f"the broker did not answer within {timeout_s:g} s")
    except Exception as exc:
        return _unknown(wanted, f"the broker refused: {type(exc).__name__}: {exc}"[:300])


def _unknown(wanted: Mapping[str, Sequence[str]], why: str) -> dict[str, GroupLag]:
    return {group: GroupLag(group, None, why) for group in wanted}


def _lags(settings: Settings, wanted: Mapping[str, Sequence[str]]) -> dict[str, GroupLag]:
    consumer = make_consumer(settings, group_id=None, client_id="sakk-lag")
    admin = make_admin(settings, "sakk-lag")
    try:
        partitions = {t: partitions_of(consumer, t) for ts in wanted.values() for t in ts}
        every = [tp for tps in partitions.values() for tp in tps]
        ends = consumer.end_offsets(every) if every else {}
        starts = consumer.beginning_offsets(every) if every else {}
        out = {}
        for group, topics in wanted.items():
            wanted_tps = [tp for t in topics for tp in partitions[t]]
            committed = admin.list_group_offsets({group: wanted_tps}).get(group, {})
            out[group] = GroupLag(group, {t: _topic_lag(partitions[t], ends, starts, committed)
                                          for t in topics})  # fmt: skip
        return out
    finally:
        consumer.close(autocommit=False)
        admin.close()


def _topic_lag(
    tps: Sequence[TopicPartition], ends: Mapping, starts: Mapping, committed: Mapping
) -> int:
    lag = 0
    for tp in tps:
        meta = committed.get(tp)
        done = meta.offset if meta is not None and meta.offset >= 0 else int(starts[tp])
        lag += max(int(ends[tp]) - done, 0)
    return lag
