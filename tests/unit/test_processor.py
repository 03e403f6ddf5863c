"""The batch processor with a fake stage, on a SQLite ledger: what every stage relies on."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.exc import OperationalError

from engine import metrics
from engine.config import Settings, load_settings
from engine.events import PAYMENT_SETTLED, PAYMENT_VALIDATED
from engine.ledger.database import make_engine, upgrade
from engine.ledger.models import DeadLetter, EmittedEvent, HandledEvent
from engine.ledger.recorder import GuardFailed
from engine.pipeline.contract import Decision, Emit, Refusal, Retryable, StageDefaults
from engine.pipeline.messages import Inbound, RawMessage
from engine.pipeline.processor import GUARD_ATTEMPTS, BatchProcessor
from engine.serialization import AvroCodec
from sakk.app import make_codec
from tests.factories import AMINA, KARIM, payment


@dataclass
class Seen:
    """The fake stage's context: the ids its batch held, and what it absorbed."""

    loaded: list[str]
    absorbed: list[str] = field(default_factory=list)

    def absorb(self, decision: Decision) -> None:
        self.absorbed.append(str(decision.payment_id))


class Echo(StageDefaults):
    """Settles every validated payment; refuses one whose amount is 13; breaks on 666."""

    name = "echo"

    def __init__(self) -> None:
        self.contexts: list[Seen] = []
        self.commits = 0

    def input_topics(self) -> list[str]:
        return ["test.validated"]

    def load(self, conn: Connection, batch: Sequence[Inbound]) -> Seen:
        context = Seen([i.event_id for i in batch])
        self.contexts.append(context)
        return context

    def decide(self, inbound: Inbound, context: Seen) -> Decision | Refusal:
        p = inbound.record
        if p["amount_minor"] == 13:
            return Refusal("unlucky", "13 is refused")
        if p["amount_minor"] == 666:
            raise ValueError("a bug in a rule")
        record = {k: p[k] for k in p if k in SETTLED_FIELDS}
        record.update(
            event_id=f"{p['event_id']}-settled", causation_event_id=p["event_id"], fee_minor=0,
            posting_id="posting", settlement_window="2026-12-01",
        )  # fmt: skip
        return Decision("settled", p["payment_id"], emits=(Emit(PAYMENT_SETTLED, record),))

    def committed(self, engine: Engine) -> None:
        self.commits += 1


SETTLED_FIELDS = {
    "payment_id", "bank_reference", "occurred_at", "payer_bank", "payer_account",
    "payee_bank", "payee_account", "amount_minor", "currency", "channel",
}  # fmt: skip


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Settings, Engine, AvroCodec]:
    settings = load_settings(environ={}, data_dir=tmp_path, topic_prefix="test")
    upgrade(settings.ledger_url)
    return settings, make_engine(settings.ledger_url), make_codec(settings)


def message(codec: AvroCodec, offset: int, amount_minor: int = 1_000) -> RawMessage:
    record = payment(AMINA, KARIM, amount_minor)
    record.update(payment_type="TRANSFER", merchant_category_code=None, egov_service=None)
    record.update(causation_event_id=record["event_id"])
    value = codec.encode(PAYMENT_VALIDATED.name, record)
    return RawMessage("test.validated", 0, offset, b"k", value, 0)


def count(engine: Engine, model: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(model)).scalar_one())


def test_a_refusal_is_dead_lettered_without_rerunning_the_batch(setup) -> None:  # type: ignore[no-untyped-def]
    settings, engine, codec = setup
    stage = Echo()
    batch = [message(codec, 0), message(codec, 1, amount_minor=13), message(codec, 2)]

    result = BatchProcessor(stage, engine, codec, settings).process(batch)

    assert len(stage.contexts) == 1  # one load, one pass: the refusal rolled nothing back
    assert len(stage.contexts[0].absorbed) == 2  # a refusal is never absorbed
    assert [d.outcome for _, d in result.handled] == ["settled", "settled"]
    assert result.dead_lettered == 1
    topics = [m.topic for m in result.outgoing]
    assert topics == ["test.settled", "test.settled", "test.dlq"]
    headers = dict(result.outgoing[2].headers)
    assert headers["sakk.kind"] == b"unlucky" and headers["sakk.source.offset"] == b"1"
    assert count(engine, HandledEvent) == 3 and count(engine, DeadLetter) == 1
    assert stage.commits == 1


def test_a_committed_batch_wakes_the_companions_declared_woken_by_it(setup) -> None:  # type: ignore[no-untyped-def]
    settings, engine, codec = setup
    seen: list[int] = []
    wake = lambda: seen.append(count(engine, HandledEvent))  # noqa: E731
    processor = BatchProcessor(Echo(), engine, codec, settings, on_committed=(wake,))

    processor.process([message(codec, 0), message(codec, 1)])
    with pytest.raises(Retryable):
        BatchProcessor(Echo(), make_engine("sqlite:///" + "/nonexistent/x.db"), codec, settings,
                       on_committed=(wake,)).process([message(codec, 2)])  # fmt: skip

    assert seen == [2]  # once, after its rows were committed; a batch that failed wakes none


def test_a_redelivered_batch_produces_what_it_emitted_and_decides_nothing(setup) -> None:  # type: ignore[no-untyped-def]
    settings, engine, codec = setup
    stage = Echo()
    processor = BatchProcessor(stage, engine, codec, settings)
    batch = [message(codec, 0), message(codec, 1, amount_minor=13)]
    first = processor.process(batch)

    again = processor.process(batch)

    assert len(stage.contexts) == 1  # nothing fresh: no load, no decision
    assert again.handled == [] and again.dead_lettered == 0 and again.duplicates == 2
    assert [(m.topic, m.value) for m in again.outgoing] == [
        (m.topic, m.value) for m in first.outgoing
    ]
    assert dict(again.outgoing[1].headers)["sakk.reason"] == b"13 is refused"
    assert count(engine, EmittedEvent) == 2 and count(engine, DeadLetter) == 1


def test_a_rule_that_breaks_dead_letters_its_message_alone(setup) -> None:  # type: ignore[no-untyped-def]
    settings, engine, codec = setup
    batch = [message(codec, 0), message(codec, 1, amount_minor=666), message(codec, 2)]
    splits = metrics.BATCHES_SPLIT.labels("echo")
    before = splits._value.get()

    result = BatchProcessor(Echo(), engine, codec, settings).process(batch)

    assert len(result.handled) == 2 and result.dead_lettered == 1
    assert splits._value.get() == before + 1  # counted: what the chaos harness reads
    dead = [m for m in result.outgoing if m.topic == "test.dlq"]
    assert dict(dead[0].headers)["sakk.kind"] == b"poison"
    assert b"a bug in a rule" in dict(dead[0].headers)["sakk.reason"]


def test_an_undecodable_message_is_dead_lettered_with_the_rest_handled(setup) -> None:  # type: ignore[no-untyped-def]
    settings, engine, codec = setup
    garbage = RawMessage("test.validated", 0, 1, b"k", b"not avro", 0)

    result = BatchProcessor(Echo(), engine, codec, settings).process(
        [message(codec, 0), garbage, message(codec, 2)]
    )

    assert len(result.handled) == 2 and result.dead_lettered == 1
    assert len(result.event_ids) == 2  # the decoded ones


def test_a_database_outage_is_retryable_and_changes_nothing(setup) -> None:  # type: ignore[no-untyped-def]
    settings, engine, codec = setup

    class Down(Echo):
        def load(self, conn: Connection, batch: Sequence[Inbound]) -> Seen:
            raise OperationalError("SELECT 1", {}, Exception("database is locked"))

    with pytest.raises(Retryable) as raised:
        BatchProcessor(Down(), engine, codec, settings).process([message(codec, 0)])

    assert isinstance(raised.value.cause, OperationalError)
    assert count(engine, HandledEvent) == 0


def test_the_same_event_twice_in_a_batch_is_decided_once(setup) -> None:  # type: ignore[no-untyped-def]
    settings, engine, codec = setup
    one = message(codec, 0)
    copy = RawMessage(one.topic, 0, 1, one.key, one.value, 0)

    result = BatchProcessor(Echo(), engine, codec, settings).process([one, copy])

    assert len(result.handled) == 1 and result.duplicates == 1


class Raced(Echo):
    """Another instance moves a bank's position row under the first ``races`` plans."""

    def __init__(self, races: int) -> None:
        super().__init__()
        self.races = races

    def load(self, conn: Connection, batch: Sequence[Inbound]) -> Seen:
        if self.races > 0:
            self.races -= 1
            raise GuardFailed("PositionMoved: bank 007 MAD moved since the snapshot")
        return super().load(conn, batch)


def test_a_batch_raced_on_a_position_row_is_planned_again_never_dead_lettered(setup) -> None:  # type: ignore[no-untyped-def]
    settings, engine, codec = setup
    stage = Raced(races=GUARD_ATTEMPTS - 1)  # every try but the last loses the race

    result = BatchProcessor(stage, engine, codec, settings).process([message(codec, 0)])

    assert result.dead_lettered == 0 and [d.outcome for _, d in result.handled] == ["settled"]
    assert count(engine, DeadLetter) == 0


def test_a_message_that_never_passes_its_guard_is_dead_lettered_after_its_tries(setup) -> None:  # type: ignore[no-untyped-def]
    settings, engine, codec = setup
    stage = Raced(races=10**6)  # a guard no plan can pass: a bug, bounded by GUARD_ATTEMPTS

    result = BatchProcessor(stage, engine, codec, settings).process([message(codec, 0)])

    assert result.dead_lettered == 1
    assert stage.races == 10**6 - GUARD_ATTEMPTS  # planned this many times, no more
