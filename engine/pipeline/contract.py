"""The stage contract: load a batch's context, decide each event, and nothing else.

A stage is its rules. The processor (:mod:`engine.pipeline.processor`) does the rest
the same way for every stage::

    context = stage.load(conn, batch)          # one read per batch
    for event in batch:
        decision = stage.decide(event, context)   # pure: no connection, no clock
        context.absorb(decision)                   # what later events in the batch see
    recorder.record(conn, rows of every decision)  # one writer, one transaction
    emit the decisions' events                     # after the commit

``decide`` never raises for an expected outcome: a rejection, a failure and a refusal
(an event to dead-letter, with its reason) are all decisions, so one bad message never
rolls back the batch it came in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, TypeVar

from sqlalchemy import Connection, Engine

from engine.domain.outcomes import Outcome
from engine.events import EventType
from engine.ids import MalformedIdError
from engine.ledger.database import is_transient
from engine.ledger.recorder import Write
from engine.pipeline.messages import Inbound, RawMessage
from engine.serialization import SchemaStoreError
from engine.trust.signing import Verdict


class Emit(NamedTuple):
    """An event a decision produces: its type and its record (as its schema defines it)."""

    event: EventType
    record: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Decision:
    """What a stage decided for one event: an outcome, its rows, the events it emits."""

    outcome: Outcome  # a metric label (engine.domain.outcomes)
    payment_id: str | None
    writes: tuple[Write, ...] = ()
    emits: tuple[Emit, ...] = ()
    channel: str = ""  # for the payment-outcome metric; empty: not counted there
    reason: str = ""  # the ISO 20022 reason code of a rejection or failure


@dataclass(frozen=True, slots=True)
class Refusal:
    """The event cannot be handled at all: it is dead-lettered with ``kind`` and ``reason``."""

    kind: str
    reason: str


C = TypeVar("C", bound="Context")


class Context(Protocol):
    """What a stage read for a batch; it absorbs each decision for the events after it."""

    def absorb(self, decision: Decision) -> None: ...


class Screen(Protocol):
    """A gate's checks for one batch, with what it read for them (the banks' keys)."""

    def check_raw(self, message: RawMessage) -> Verdict: ...

    def check_record(
        self, verdict: Verdict, message: RawMessage, event_type: str, record: dict[str, Any]
    ) -> Verdict: ...

    def switch_ids(
        self, verdict: Verdict, event_type: str, record: dict[str, Any]
    ) -> dict[str, Any] | MalformedIdError:
        """``record`` with the ids its bank supplied in the bank's namespace, or why not."""
        ...


class Gate(Protocol):
    """Checks a stage wants before anything else: refusals are dead-lettered, nothing else."""

    def screen(self, engine: Engine) -> Screen:
        """Read what the checks need, once per batch."""
        ...


class Stage(Protocol[C]):
    """A consumer's rules. See the module docstring for how the processor drives it."""

    name: str
    gate: Gate | None

    def input_topics(self) -> list[str]: ...

    def load(self, conn: Connection, batch: Sequence[Inbound]) -> C:
        """Everything ``decide`` needs for ``batch``, read once."""
        ...

    def decide(self, inbound: Inbound, context: C) -> Decision | Refusal:
        """Pure: the same event and context give the same decision, every time."""
        ...

    def committed(self, engine: Engine) -> None:
        """Called once a batch's transaction has committed (e.g. to wake a delivery loop)."""
        ...


class StageDefaults:
    """Defaults for the optional parts of :class:`Stage`."""

    gate: Gate | None = None

    def committed(self, engine: Engine) -> None:
        return None


class Retryable(Exception):
    """The work may succeed later (the database is down, approvals unreadable): retry it.

    The processor raises it, wrapping the cause, for every fault that is not the input's;
    the service loop retries on it with backoff and on nothing else.
    """

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause).splitlines()[0] if str(cause) else type(cause).__name__)
        self.cause = cause

    @staticmethod
    def covers(exc: BaseException) -> bool:
        """True for a fault of the surroundings (database, approved schemas), not of the input."""
        return is_transient(exc) or isinstance(exc, SchemaStoreError)
