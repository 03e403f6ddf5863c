"""The null pipeline: the ceiling of the topology, three stage processes doing no work.

Three processes are chained as the stages are (validator: ``initiated`` -> ``validated``,
settlement: ``validated`` -> ``settled``, notification: ``settled`` -> ``notified``),
on the same topic layout (``create_topics``: every topic, the configured partitions),
each with the client the stages use (``make_consumer`` in the stage's consumer group
shape, ``make_producer``: idempotent, ``acks=all``) and the stages' loop: poll up to
``batch_max_records`` messages, produce them all, wait for every acknowledgement, commit
the offsets. No decoding, no rule, no database. What the full flow achieves beside it
is what the stages' own work costs; the null pipeline is what no stage can beat here.

``python -m tooling.bench.null_pipeline STAGE SOURCE SINK MESSAGES READY RESULT`` is one
hop (the benchmark starts three); settings come from the environment (``SAKK_*``).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer
from kafka.structs import OffsetAndMetadata

from engine.config import Settings, load_settings
from engine.kafka.client import Outgoing, create_topics, make_consumer, make_producer, send_all
from engine.supervisor import settings_env
from engine.topology import Topology
from sakk.app import TOPOLOGY
from tooling.bench.checks import BenchmarkCheckError


def hops(topology: Topology) -> tuple[tuple[str, str, str], ...]:
    """Each hop: the stage it stands for, the topic it reads, the topic it writes.

    A payment's main line through the declared stages: each stage reads its first input's
    topic and writes its first output that the next stage reads (the last, its first).
    """
    stages = topology.stages
    line = []
    for spec, after in zip(stages, (*stages[1:], None), strict=True):
        read_next = set() if after is None else set(after.input_topic_names())
        outputs = [e.topic_name for e in spec.outputs]
        dst = next((t for t in outputs if t in read_next), outputs[0])
        line.append((spec.name, spec.inputs[0].topic_name, dst))
    return tuple(line)


HOPS = hops(TOPOLOGY)
PREFILL_CHUNK = 5_000
KEYS = 997  # distinct message keys, spread over every partition as payers' accounts are
READY_TIMEOUT_S = 60.0  # a hop's consumer group joined (partitions assigned)
HOP_TIMEOUT_S = 600.0  # one hop moving every message
WAIT_POLL_S = 0.05


@dataclass(frozen=True)
class HopUsage:
    """One hop's share: what it moved, its CPU and wall times while moving it."""

    stage: str
    messages: int
    cpu_s: float  # from its first non-empty poll to its last commit
    started_at: float  # epoch seconds: its first non-empty poll
    finished_at: float  # epoch seconds: its last commit

    @property
    def cpu_ms_per_message(self) -> float:
        return self.cpu_s * 1000 / self.messages if self.messages else 0.0


@dataclass(frozen=True)
class NullPipelineResult:
    messages: int
    message_bytes: int
    partitions: int
    hops: tuple[HopUsage, ...]

    @property
    def seconds(self) -> float:
        """From the first hop's first poll to the last hop's last commit: end to end."""
        if not self.hops:
            return 0.0
        return max(h.finished_at for h in self.hops) - self.hops[0].started_at

    @property
    def messages_per_s(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_ms_per_message_per_hop(self) -> float:
        moved = sum(h.messages for h in self.hops)
        return sum(h.cpu_s for h in self.hops) * 1000 / moved if moved else 0.0


def null_pipeline_figures(null: NullPipelineResult) -> dict[str, Any]:
    """The report's ``null_pipeline`` part."""
    return {
        "messages": null.messages, "message_bytes": null.message_bytes,
        "partitions": null.partitions, "seconds": round(null.seconds, 3),
        "messages_per_s": round(null.messages_per_s, 1),
        "cpu_ms_per_message_per_hop": round(null.cpu_ms_per_message_per_hop, 4),
        "hops": {h.stage: {"cpu_ms_per_message": round(h.cpu_ms_per_message, 4)}
                 for h in null.hops},
    }  # fmt: skip


def null_pipeline_line(report: dict[str, Any]) -> str:
    """The report's line for the topology's ceiling ("" when it did not run)."""
    null = report.get("null_pipeline")
    if null is None:
        return ""
    return (
        f"null pipeline (3 processes: consume + produce + commit, no work): "
        f"{null['messages_per_s']:,.0f} messages/s end to end, "
        f"{null['cpu_ms_per_message_per_hop']:.3f} CPU ms per message per hop"
    )


def measure_null_pipeline(
    settings: Settings, messages: int, message_bytes: int, work_dir: Path
) -> NullPipelineResult:
    """Prefill ``initiated``, then time ``messages`` through the three hops, end to end.

    The downstream hops start first and the first hop only once they have joined their
    groups, so no hop's start-up is inside the measured window.
    """
    create_topics(settings)
    _prefill(settings, settings.topic(HOPS[0][1]), messages, message_bytes)
    work_dir.mkdir(parents=True, exist_ok=True)
    hops = {
        stage: _Hop(stage, settings.topic(src), settings.topic(dst), work_dir)
        for stage, src, dst in HOPS
    }
    try:
        first, *downstream = (hops[stage] for stage, _src, _dst in HOPS)
        for hop in downstream:
            hop.start(settings, messages)
        for hop in downstream:
            hop.wait_ready()
        first.start(settings, messages)
        usage = tuple(hops[stage].result(messages) for stage, _src, _dst in HOPS)
    finally:
        for hop in hops.values():
            hop.stop()
    return NullPipelineResult(messages, message_bytes, settings.topic_partitions, usage)


def _prefill(settings: Settings, topic: str, messages: int, message_bytes: int) -> None:
    producer = make_producer(settings, "bench-null-prefill")
    payload = b"x" * message_bytes
    try:
        for start in range(0, messages, PREFILL_CHUNK):
            batch = [
                Outgoing(topic, f"acct-{i % KEYS}".encode(), payload)
                for i in range(start, min(start + PREFILL_CHUNK, messages))
            ]
            send_all(producer, batch, settings.produce_timeout_s)
    finally:
        producer.close()


@dataclass
class _Hop:
    """One hop's process, its readiness marker and its result file."""

    stage: str
    source: str
    sink: str
    work_dir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def ready_path(self) -> Path:
        return self.work_dir / f"null-{self.stage}.ready"

    @property
    def result_path(self) -> Path:
        return self.work_dir / f"null-{self.stage}.json"

    def start(self, settings: Settings, messages: int) -> None:
        command = [sys.executable, "-m", "tooling.bench.null_pipeline", self.stage,
                   self.source, self.sink, str(messages), str(self.ready_path),
                   str(self.result_path)]  # fmt: skip
        with open(self.work_dir / f"null-{self.stage}.log", "ab") as log:
            self.process = subprocess.Popen(
                command, env=settings_env(settings), stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def wait_ready(self) -> None:
        self._wait_for(self.ready_path, READY_TIMEOUT_S, "join its consumer group")

    def result(self, messages: int) -> HopUsage:
        self._wait_for(self.result_path, HOP_TIMEOUT_S, f"move {messages:,} messages")
        usage = HopUsage(**json.loads(self.result_path.read_text()))
        if usage.messages != messages:
            raise BenchmarkCheckError(
                f"null pipeline: {self.stage} moved {usage.messages:,} of {messages:,} messages"
            )
        return usage

    def _wait_for(self, path: Path, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not path.exists():
            if self.process is None or self.process.poll() is not None:
                raise BenchmarkCheckError(
                    f"null pipeline: {self.stage} exited before it could {what} "
                    f"(log in {self.work_dir})"
                )
            if time.monotonic() > deadline:
                raise BenchmarkCheckError(
                    f"null pipeline: {self.stage} did not {what} within {timeout_s:.0f}s"
                )
            time.sleep(WAIT_POLL_S)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        if self.process is not None:
            self.process.wait(timeout=READY_TIMEOUT_S)


# --- one hop, in its own process ------------------------------------------------------------


def run_hop(
    settings: Settings, stage: str, source: str, sink: str, messages: int, ready: Path | None
) -> HopUsage:
    """Consume ``source``, produce to ``sink``, commit: until ``messages`` moved or timed out.

    With ``ready``, join the group first (its source is empty until the hop before it
    starts) and say so there; the first hop's source is full, and its window opens at its
    first non-empty poll anyway.
    """
    consumer = make_consumer(settings, settings.group(f"null-{stage}"), [source], f"null-{stage}")
    producer = make_producer(settings, f"null-{stage}")
    moved, cpu_started, started_at = 0, 0.0, 0.0
    deadline = time.monotonic() + HOP_TIMEOUT_S
    try:
        if ready is not None:
            _join(consumer, settings, deadline)
            ready.write_text("ready\n")
        while moved < messages and time.monotonic() < deadline:
            polled = consumer.poll(
                timeout_ms=settings.poll_timeout_ms, max_records=settings.batch_max_records
            )
            if not polled:
                continue
            if not moved:
                cpu_started, started_at = time.process_time(), time.time()
            out = [Outgoing(sink, r.key, r.value) for records in polled.values() for r in records]
            send_all(producer, out, settings.produce_timeout_s)
            consumer.commit(
                {tp: OffsetAndMetadata(rs[-1].offset + 1, "", -1) for tp, rs in polled.items()}
            )
            moved += len(out)
        return HopUsage(stage, moved, time.process_time() - cpu_started, started_at, time.time())
    finally:
        consumer.close()
        producer.close()


def _join(consumer: KafkaConsumer, settings: Settings, deadline: float) -> None:
    """Poll the still empty source until the group assigned this hop its partitions."""
    while not consumer.assignment() and time.monotonic() < deadline:
        if consumer.poll(timeout_ms=settings.poll_timeout_ms, max_records=1):
            raise RuntimeError("the source held messages before the hop joined its group")


def main(argv: Sequence[str] | None = None) -> None:
    stage, source, sink, messages, ready, result = argv or sys.argv[1:]
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    settings = load_settings()
    ready_path = None if stage == HOPS[0][0] else Path(ready)
    usage = run_hop(settings, stage, source, sink, int(messages), ready_path)
    partial = Path(result).with_suffix(".tmp")
    partial.write_text(json.dumps(usage.__dict__))
    partial.rename(result)  # the parent sees the whole file or none


if __name__ == "__main__":
    main()
