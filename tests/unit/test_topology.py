"""The declared topology: what each stage reads is what it subscribes to; the readers of the
declaration (the service's metrics, the supervisor's command, replay's path) follow it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine import metrics
from engine.config import load_settings
from engine.events import (
    LIQUIDITY_EVENTS,
    PAYMENT_INITIATED,
    PAYMENT_SETTLED,
    PAYMENT_STEP_COMPLETED,
    PAYMENT_VALIDATED,
)
from engine.ledger.database import make_engine
from engine.pipeline.contract import Decision, Emit
from engine.pipeline.messages import Inbound, RawMessage
from engine.pipeline.processor import BatchResult
from engine.pipeline.service import ConsumerService
from engine.topology import StageSpec, Topology
from sakk.app import TOPOLOGY, make_codec


def test_each_stage_subscribes_to_the_inputs_it_declares(tmp_path: Path) -> None:
    settings = load_settings(environ={}, data_dir=tmp_path, topic_prefix="t")

    for spec in TOPOLOGY.stages:
        stage = spec.factory(settings)
        assert stage.name == spec.name
        assert set(stage.input_topics()) == {e.topic(settings) for e in spec.inputs}


def test_every_topic_a_stage_reads_is_emitted_by_a_stage_or_sent_by_a_bank() -> None:
    emitted = {e for spec in TOPOLOGY.stages for e in spec.outputs}
    read = {e for spec in TOPOLOGY.stages for e in spec.inputs}

    # ... or by an operator: a bank's liquidity movements (sakk liquidity)
    assert read - emitted == {PAYMENT_INITIATED, *TOPOLOGY.entry.inputs, *LIQUIDITY_EVENTS}


def test_the_payment_path_is_validator_then_settlement_then_notification() -> None:
    assert TOPOLOGY.names == ("validator", "settlement", "notification")
    assert (TOPOLOGY.entry.name, TOPOLOGY.deciding.name) == ("validator", "settlement")
    assert TOPOLOGY.reading(PAYMENT_SETTLED).name == "notification"
    assert TOPOLOGY.command("settlement")[-2:] == ["run", "settlement"]
    assert [c.name for s in TOPOLOGY.stages for c in s.companions] == ["expiry", "delivery"]
    assert [c.woken_by_commits for c in TOPOLOGY.stage("notification").companions] == [True]


def test_settlement_s_money_is_counted_from_the_events_it_emits() -> None:
    assert TOPOLOGY.stage("settlement").observes == {
        PAYMENT_SETTLED.name: metrics.observe_settled,
        PAYMENT_STEP_COMPLETED.name: metrics.observe_steps,
    }


def test_an_unknown_stage_is_refused_naming_the_declared_ones() -> None:
    with pytest.raises(ValueError, match="expected one of .*validator"):
        TOPOLOGY.command("settlment")


def test_two_stages_of_one_name_are_refused() -> None:
    spec = TOPOLOGY.stage("validator")
    with pytest.raises(ValueError, match="must differ"):
        Topology((spec, spec), launcher=("x",))


class _Stage:
    name, gate = "s", None

    def input_topics(self) -> list[str]:
        return []


class _NoConsumer:
    def assignment(self) -> set[Any]:
        return set()


def test_the_service_counts_the_emits_a_stage_declares_it_observes(tmp_path: Path) -> None:
    settings = load_settings(environ={}, data_dir=tmp_path)
    seen: list[list[Any]] = []
    spec = StageSpec(
        "s", lambda _s: _Stage(), (PAYMENT_VALIDATED,), (PAYMENT_SETTLED,),  # type: ignore[arg-type, return-value]
        observes={PAYMENT_SETTLED.name: lambda records: seen.append(list(records))},
    )  # fmt: skip
    engine = make_engine(settings.ledger_url)
    service = ConsumerService(
        spec.factory(settings), engine, make_codec(settings), settings, observes=spec.observes
    )
    service._consumer = _NoConsumer()  # type: ignore[assignment]
    settled, other = {"amount_minor": 1}, {"amount_minor": 2}
    raw = RawMessage("t.validated", 0, 0, b"k", b"v", 0)
    decision = Decision(
        "anything", "p1", emits=(Emit(PAYMENT_VALIDATED, other), Emit(PAYMENT_SETTLED, settled))
    )
    result = BatchResult(handled=[(Inbound(raw, PAYMENT_VALIDATED.name, {}), decision)])

    messages = metrics.MESSAGES.labels("s", "t.validated", "anything")
    before = messages._value.get()

    service._observe([raw], result, 0.01)

    assert seen == [[settled]]  # by its event type, wherever it stands among the emits
    # Counted under the stage's name, never under an observed event's.
    assert messages._value.get() == before + 1
