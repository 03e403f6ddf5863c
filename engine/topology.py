"""The pipeline's shape as data: its stages, what each reads and emits, what runs beside it.

The stages' own package declares the one :class:`Topology` the switch runs
(``consumers.topology.TOPOLOGY``); the composition root hands it to whatever needs the
shape: the service loop (what it counts of a stage's emits), the replay (which stage
forwards to which, under which ids), the supervisor (how one stage runs as a process),
the fault-injection harness and the benchmark (which stages there are, what they
read). The engine defines the types only, so it never imports the stages.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from sqlalchemy import Engine

from engine.config import Settings
from engine.events import PAYMENT_INITIATED, PAYMENT_NOTIFIED, PAYMENT_VALIDATED, EventType
from engine.pipeline.contract import Stage
from engine.serialization import AvroCodec

# Counts a batch's emitted records of one event type, after its commit (engine.metrics).
Observer = Callable[[Sequence[Mapping[str, Any]]], None]


class Companion(Protocol):
    """A loop that runs beside a stage in its process (a delivery loop, a scheduler)."""

    def run(self) -> None: ...


@runtime_checkable
class WokenCompanion(Companion, Protocol):
    """A companion the stage's committed batches wake (work they made is due now)."""

    def wake(self) -> None: ...


CompanionFactory = Callable[[Settings, Engine, AvroCodec, threading.Event], Companion]


@dataclass(frozen=True, slots=True)
class CompanionSpec:
    """A loop started with a stage, in a thread of its own named ``name``."""

    name: str
    factory: CompanionFactory
    woken_by_commits: bool = False  # the stage's committed batches call its ``wake``


@dataclass(frozen=True, slots=True)
class StageSpec:
    """One stage: how it is made, what it reads and emits, what runs and is counted with it."""

    name: str
    factory: Callable[[Settings], Stage[Any]]
    inputs: tuple[EventType, ...]
    outputs: tuple[EventType, ...]
    companions: tuple[CompanionSpec, ...] = ()
    # Emitted event type name -> what counts a batch's records of it, after the commit.
    observes: Mapping[str, Observer] = field(default_factory=dict)
    # Settings the stage cannot run with raise SettingsError here, before anything starts.
    check: Callable[[Settings], None] | None = None
    # The stage as a replay runs it (its gate judging at each record's own time); None: as live.
    replay_factory: Callable[[Settings], Stage[Any]] | None = None
    # The id of the event it forwards for an input, from the input's type and event id.
    forwarded_id: Callable[[str, str], str] | None = None
    instances_under_faults: int = 1  # the fault-injection harness's default fleet

    def input_topic_names(self) -> tuple[str, ...]:
        """Its inputs' short topic names (``Settings.topic`` adds the prefix), each once."""
        return tuple(dict.fromkeys(e.topic_name for e in self.inputs))

    def for_replay(self, settings: Settings) -> Stage[Any]:
        return (self.replay_factory or self.factory)(settings)


@dataclass(frozen=True, slots=True)
class Topology:
    """The stages, in the order a payment meets them, and how one runs as a process."""

    stages: tuple[StageSpec, ...]
    launcher: tuple[str, ...]  # the command that runs one stage; its name is appended

    def __post_init__(self) -> None:
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must differ: {names}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.stages)

    def stage(self, name: str) -> StageSpec:
        for spec in self.stages:
            if spec.name == name:
                return spec
        raise ValueError(f"unknown consumer {name!r}: expected one of {self.names}")

    def command(self, name: str) -> list[str]:
        """The command that runs stage ``name`` (and its companions) as one process."""
        return [*self.launcher, self.stage(name).name]

    def reading(self, event: EventType) -> StageSpec:
        """The stage that consumes ``event``."""
        for spec in self.stages:
            if event in spec.inputs:
                return spec
        raise ValueError(f"no stage reads {event.name}")

    @property
    def entry(self) -> StageSpec:
        """The stage that reads what the banks send (payments.initiated): the validator."""
        return self.reading(PAYMENT_INITIATED)

    @property
    def deciding(self) -> StageSpec:
        """The stage that reads what the entry stage forwards and decides it: settlement."""
        return self.reading(PAYMENT_VALIDATED)

    @property
    def notifying(self) -> StageSpec:
        """The stage that tells the banks (it emits payments.notified): the notification."""
        for spec in self.stages:
            if PAYMENT_NOTIFIED in spec.outputs:
                return spec
        raise ValueError(f"no stage emits {PAYMENT_NOTIFIED.name}")
