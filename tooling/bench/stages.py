"""Each stage's own cost, without Kafka: its batch processor over pre-encoded payments.

``python -m tooling.bench.stages --payments 10000 [--database-url URL]`` builds a fresh
ledger with the benchmark's reference data, encodes and signs that many simulated
payments, and drives the very code the consumers run (``BatchProcessor``) stage after
stage: the validator over the initiated messages, settlement over what it validated,
the notification stage over every outcome, then the delivery loop with the log sender
until every notification is finished. It prints CPU seconds (``time.process_time``) per
1,000 messages of each, so a change to a stage's rules or writes is measured apart from
the broker, the network and the other processes. Figures, never assertions: the smoke
test only checks that every payment reached an outcome.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from consumers.notify.book import DeliveryBook, deliver_due
from consumers.notify.channels import LogSender
from engine.config import Settings, load_settings
from engine.events import PAYMENT_INITIATED
from engine.kafka.client import Outgoing
from engine.ledger.reference import load_reference_data
from engine.pipeline.messages import RawMessage
from engine.pipeline.processor import BatchProcessor
from engine.pipeline.quarantine import InHandLedger
from sakk.app import TOPOLOGY, ledger_engine, make_codec
from tooling.bench.flow import BENCH_CUSTOMERS_PER_BANK
from tooling.reference_data import build_reference
from tooling.workload.traffic import TrafficSimulator, register_simulated_keys, simulation_signers

SEED = 4
PARTITIONS = 6  # as the topics: a stage sees each partition's messages in order
DELIVERY_ROUNDS_MAX = 10_000


@dataclass(frozen=True)
class StageCost:
    step: str
    messages: int
    cpu_s: float
    wall_s: float

    @property
    def cpu_s_per_1000(self) -> float:
        return self.cpu_s / self.messages * 1000 if self.messages else 0.0


def measure_stages(
    payments: int, database_url: str = "", batch: int = 500, work_dir: Path | None = None
) -> list[StageCost]:
    """CPU and wall time of each stage and of delivery, for ``payments`` simulated payments."""
    work = work_dir or Path(tempfile.mkdtemp(prefix="sakk-stages-"))
    settings = load_settings(
        environ={}, data_dir=work, database_url=database_url, topic_prefix="stages",
        notify_log_path=work / "notifications.jsonl",
    )  # fmt: skip
    reference = build_reference(customers_per_bank=BENCH_CUSTOMERS_PER_BANK)
    engine = ledger_engine(settings, migrate=True)
    try:
        load_reference_data(engine, reference)
        signers = simulation_signers(reference, SEED)
        register_simulated_keys(settings, signers)
        codec = make_codec(settings, engine)
        initiated = _initiated(settings, reference, signers, codec, payments)

        costs = []
        produced: list[Outgoing] = []
        for spec in TOPOLOGY.stages:  # each reads what the ones before it produced
            read = {e.topic(settings) for e in spec.inputs}
            source = [m for m in initiated if m.topic in read] + _as_consumed(produced, read)
            processor = BatchProcessor(spec.factory(settings), engine, codec, settings)
            cost, out = _run(spec.name, processor, source, batch)
            costs.append(cost)
            produced += out
        costs.append(_deliver(settings, engine, codec))
        return costs
    finally:
        engine.dispose()


def _initiated(settings: Settings, reference, signers, codec, payments: int) -> list[RawMessage]:  # type: ignore[no-untyped-def]
    topic = PAYMENT_INITIATED.topic(settings)
    start = datetime.now(UTC) - timedelta(minutes=1)  # the validator refuses future times
    offsets = [0] * PARTITIONS
    messages = []
    now_ms = int(time.time() * 1000)
    for m in TrafficSimulator(reference, SEED, start, codec=codec).generate(payments):
        if m.payment is None:
            key, value = m.key, m.raw or b""
        else:
            key, value = (
                PAYMENT_INITIATED.key(m.payment),
                codec.encode(PAYMENT_INITIATED.name, m.payment),
            )
        headers = tuple(signers.headers(m.signer, topic, key, value)) if m.signer else ()
        partition = zlib.crc32(key or b"") % PARTITIONS
        messages.append(
            RawMessage(topic, partition, offsets[partition], key, value, now_ms, headers)
        )
        offsets[partition] += 1
    return sorted(messages, key=lambda r: (r.partition, r.offset))


def _run(
    step: str, processor: BatchProcessor, messages: Sequence[RawMessage], batch: int
) -> tuple[StageCost, list[Outgoing]]:
    """Each batch as the live loop handles it: offsets in hand marked, then one transaction."""
    produced: list[Outgoing] = []
    in_hand = InHandLedger(step, processor.engine)
    cpu, wall = time.process_time(), time.perf_counter()
    for start in range(0, len(messages), batch):
        polled: dict[tuple[str, int], list[RawMessage]] = {}
        for m in messages[start : start + batch]:
            polled.setdefault((m.topic, m.partition), []).append(m)
        for unit in in_hand.units(polled):
            in_hand.mark(unit)
            produced += processor.process(unit.messages, unit.clears).outgoing
            in_hand.committed(unit)
    cost = StageCost(step, len(messages), time.process_time() - cpu, time.perf_counter() - wall)
    return cost, produced


def _as_consumed(produced: Sequence[Outgoing], topics: set[str]) -> list[RawMessage]:
    """What the next stage would read of ``produced``: by topic and partition, in order."""
    offsets: dict[tuple[str, int], int] = {}
    messages = []
    now_ms = int(time.time() * 1000)
    for m in produced:
        if m.topic not in topics:
            continue
        partition = zlib.crc32(m.key) % PARTITIONS
        offset = offsets.get((m.topic, partition), 0)
        offsets[(m.topic, partition)] = offset + 1
        messages.append(RawMessage(m.topic, partition, offset, m.key, m.value, now_ms))
    return sorted(messages, key=lambda r: (r.topic, r.partition, r.offset))


def _deliver(settings: Settings, engine, codec) -> StageCost:  # type: ignore[no-untyped-def]
    book = DeliveryBook(settings, engine, codec, "log")
    sender = LogSender(settings.notify_log_path)
    delivered = 0
    cpu, wall = time.process_time(), time.perf_counter()
    try:
        for _round in range(DELIVERY_ROUNDS_MAX):
            announced = deliver_due(book, sender, datetime.now(UTC))
            if not announced:
                break
            delivered += len(announced)
            book.mark_announced([a.notification_id for a in announced], datetime.now(UTC))
    finally:
        sender.close()
    return StageCost("delivery", delivered, time.process_time() - cpu, time.perf_counter() - wall)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=10_000)
    parser.add_argument("--database-url", default="", help="default: a fresh SQLite ledger")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--work-dir", type=Path, default=None, help="default: a new temporary one")
    args = parser.parse_args(argv)
    if not 1 <= args.payments <= 1_000_000 or not 1 <= args.batch <= 10_000:
        parser.error("--payments must be 1..1,000,000 and --batch 1..10,000")
    costs = measure_stages(args.payments, args.database_url, args.batch, args.work_dir)
    if args.json:
        print(json.dumps([c.__dict__ | {"cpu_s_per_1000": c.cpu_s_per_1000} for c in costs]))
        return
    print(f"{'step':<13} {'messages':>9} {'CPU s':>7} {'CPU s/1,000':>11} {'wall s':>7}")
    for c in costs:
        print(f"{c.step:<13} {c.messages:>9,} {c.cpu_s:>7.2f} {c.cpu_s_per_1000:>11.3f} "
              f"{c.wall_s:>7.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
