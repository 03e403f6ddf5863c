"""The switch's operator and the banks' treasuries during a chaos run, while faults run.

On a clock of its own (shares of the fault window), one thread does what operators do,
through the product's own paths, each an audited operator action (``engine.ops``):

1. bank 902 deposits (a ``FundsIn`` on ``liquidity.movements``, as ``sakk liquidity
   fund`` issues it); it must be posted;
2. bank 901 withdraws a tenth of its deposit (``FundsOut``), far above its cap and far
   below what it leaves: it must be posted;
3. once bank 902 owes something (its first payments open the run), it asks to withdraw
   its deposit down to one minor unit below its exposure at that moment: that
   ``FundsOut`` must be refused ``AM04``, whatever the faults do, since 902's exposure
   only rises until a window settles (it receives nothing, it holds nothing) and the
   window is settled only once this withdrawal is decided;
4. the window of the run's business day (once it has a net to settle) is closed (early,
   after the close delay), settled (its pacs.009 instructions built), and confirmed with
   the pacs.002 a settlement bank that did as instructed would send (``build_answer``),
   each move published on ``settlement.windows`` as ``sakk settlement`` publishes it.

Each step waits for the one before (a movement until settlement decided it); a step
the faults interrupt (the ledger locked, the broker frozen) is tried again until the
run's bound. What happened, with the times, goes to :class:`OperatorRun`; the invariants
(:mod:`tooling.chaos.risk_checks`) then hold each outcome to what it had to be.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Engine, select
from sqlalchemy.exc import DBAPIError

from engine.audit.window_events import publish_transitions
from engine.audit.window_lifecycle import window_rows
from engine.audit.window_settlement import SettleResult, parties_of, read_answers
from engine.audit.windows import Window, window_report
from engine.config import Settings
from engine.events import FUNDS_IN, FUNDS_OUT, EventType
from engine.kafka.client import Outgoing, make_producer, send_all
from engine.ledger.models import LiquidityMovement, table_of
from engine.ledger.positions import read_banks
from engine.money import format_minor
from engine.ops.action import Actor, run_action
from engine.ops.limits import IssueMovement
from engine.ops.windows import CloseWindow, ConfirmWindow, SettleWindow
from engine.risk.confirmation import answer_lines, build_answer
from engine.risk.instruction import Parties
from engine.serialization import AvroCodec
from tooling.workload.core import CURRENCY
from tooling.workload.pressing import CAP_BOUND, LIQUIDITY_BOUND, PressingPlan

log = logging.getLogger(__name__)

ACTOR = Actor("chaos-operator", "chaos run: liquidity and a window settled under faults")
POSTED, REFUSED = "POSTED", "REFUSED"
# When each step starts, as a share of the fault window (each also waits for the last).
FUNDS_IN_AT, FUNDS_OUT_AT, UNCOVERING_AT = 0.1, 0.15, 0.2
RETRY_S = 0.5
POLL_S = 0.2
T = TypeVar("T")


@dataclass
class Movement:
    """A ``FundsIn`` or ``FundsOut`` the run issued, what it had to be, what it was."""

    kind: str  # FundsIn | FundsOut
    bank: str
    amount_minor: int
    expected: str  # POSTED | REFUSED
    why: str  # why it had to be that
    movement_id: str = ""
    liquidity_before_minor: int | None = None  # the uncovering one: the deposit it draws on
    exposure_before_minor: int | None = None  # and the exposure it had to leave uncovered
    issued_s: float | None = None  # since the fault window opened
    decided_s: float | None = None
    outcome: str | None = None
    reason_code: str | None = None
    reason_message: str | None = None


@dataclass
class WindowRun:
    """The window the run settled: its moves' times, the documents exchanged."""

    label: str = ""
    moves: list[tuple[str, float]] = field(default_factory=list)  # (state, seconds)
    instructions: dict[str, bytes] = field(default_factory=dict)  # currency -> pacs.009
    confirmations: dict[str, bytes] = field(default_factory=dict)  # currency -> pacs.002
    published: int = 0  # lifecycle events published on settlement.windows


@dataclass
class OperatorRun:
    movements: list[Movement] = field(default_factory=list)
    window: WindowRun = field(default_factory=WindowRun)
    errors: list[str] = field(default_factory=list)  # a step that could not be done
    fault_window_s: float = 0.0


class Operator(threading.Thread):
    """Runs the steps above; ``opened``: when the fault window opened (monotonic)."""

    def __init__(
        self, settings: Settings, engine: Engine, codec: AvroCodec, plan: PressingPlan,
        window: Window, opened: float, duration_s: float, bound_s: float,
    ) -> None:  # fmt: skip
        super().__init__(name="chaos-operator", daemon=True)
        self.settings, self.engine, self.codec, self.plan = settings, engine, codec, plan
        self.window, self.opened, self.duration_s = window, opened, duration_s
        self.deadline = opened + bound_s
        self.stopping = threading.Event()
        self.result = OperatorRun(fault_window_s=duration_s)

    def run(self) -> None:
        try:
            self._steps()
        except _GaveUp as exc:
            self.result.errors.append(str(exc))
        except Exception as exc:  # reported as a violation: the run goes on to its checks
            log.exception("the chaos operator stopped")
            self.result.errors.append(f"the operator stopped: {exc!r}")

    def _steps(self) -> None:
        plan = self.plan
        self._wait_until(FUNDS_IN_AT)
        self._move(Movement(FUNDS_IN.name, LIQUIDITY_BOUND, plan.funds_in_minor, POSTED,
                            "a deposit is always posted"))  # fmt: skip
        self._wait_until(FUNDS_OUT_AT)
        self._move(Movement(
            FUNDS_OUT.name, CAP_BOUND, plan.funds_out_minor, POSTED,
            "it leaves nine tenths of the deposit, far above the bank's cap, which bounds "
            "its exposure",
        ))  # fmt: skip
        self._wait_until(UNCOVERING_AT)
        self._move(self._uncovering())
        self._settle_window()

    # -- movements -------------------------------------------------------------------------

    def _uncovering(self) -> Movement:
        """902's withdrawal down to one minor unit below its exposure, once it has one."""
        key = (LIQUIDITY_BOUND, CURRENCY)

        def look() -> Any:
            with self.engine.connect() as conn:
                return read_banks(conn, [key])[key]

        row = self._retry(look, "read bank 902's position")
        while row.exposure.total_minor <= 0:
            self._pause(POLL_S, f"bank {LIQUIDITY_BOUND} to owe something")
            row = self._retry(look, "read bank 902's position")
        exposure = row.exposure.total_minor
        amount = row.liquidity_minor - exposure + 1
        return Movement(
            FUNDS_OUT.name, LIQUIDITY_BOUND, amount, REFUSED,
            f"it would leave {format_minor(exposure - 1, CURRENCY)} of liquidity, below the "
            f"bank's exposure of {format_minor(exposure, CURRENCY)} then, which only rises "
            "until the window settles, after this is decided",
            liquidity_before_minor=row.liquidity_minor, exposure_before_minor=exposure,
        )  # fmt: skip

    def _move(self, movement: Movement) -> None:
        event = FUNDS_IN if movement.kind == FUNDS_IN.name else FUNDS_OUT
        now = datetime.now(UTC)
        record = _movement_record(movement, now)
        movement.movement_id = record["payment_id"]
        self.result.movements.append(movement)
        action = IssueMovement(event.name, movement.bank, CURRENCY, movement.amount_minor,
                               movement.movement_id)  # fmt: skip
        self._retry(lambda: run_action(self.engine, action, ACTOR, now), f"record {event.name}")
        self._retry(lambda: self._publish(event, record), f"publish {event.name}")
        movement.issued_s = self._elapsed()
        decided = self._decided(movement.movement_id)
        while decided is None:
            self._pause(POLL_S, f"{event.name} {movement.movement_id} to be decided")
            decided = self._decided(movement.movement_id)
        movement.decided_s = self._elapsed()
        movement.outcome, movement.reason_code, movement.reason_message = decided

    def _publish(self, event: EventType, record: Mapping[str, Any]) -> None:
        message = Outgoing(
            event.topic(self.settings), event.key(record), self.codec.encode(event.name, record)
        )
        producer = make_producer(self.settings, "sakk-chaos-operator")
        try:
            send_all(producer, [message], self.settings.produce_timeout_s)
        finally:
            producer.close(timeout=self.settings.produce_timeout_s)

    def _decided(self, movement_id: str) -> tuple[str, str | None, str | None] | None:
        m = table_of(LiquidityMovement)

        def look() -> Any:
            with self.engine.connect() as conn:
                return conn.execute(
                    select(m.c.outcome, m.c.reason_code, m.c.reason_message).where(
                        m.c.movement_id == movement_id
                    )
                ).first()

        row = self._retry(look, "read a movement's outcome")
        return None if row is None else (row.outcome, row.reason_code, row.reason_message)

    # -- the window ------------------------------------------------------------------------

    def _settle_window(self) -> None:
        """Close (after the close delay), settle, confirm; each move published."""
        window, run = self.window, self.result.window
        run.label = window.label
        while not self._retry(self._owed, "read the positions"):
            self._pause(POLL_S, "a first interbank payment to settle")
        requested_at = datetime.now(UTC)
        delay = timedelta(seconds=self.settings.settlement_close_delay_s)
        self._pause(delay.total_seconds(), "the close delay")
        close = CloseWindow(window, early=True, requested_at=requested_at, by=ACTOR.name)
        self._retry(lambda: run_action(self.engine, close, ACTOR, datetime.now(UTC)), "close")
        self._moved("CLOSED")
        parties = self._retry(self._parties, "read the parties")

        def keep(instructions: Mapping[str, bytes]) -> None:
            run.instructions = dict(instructions)

        settle = SettleWindow(window.label, parties, ACTOR.name, keep)
        done = self._retry(
            lambda: run_action(self.engine, settle, ACTOR, datetime.now(UTC)), "settle"
        )
        self._moved("SETTLING")
        result: SettleResult = done.result
        now = datetime.now(UTC)
        run.confirmations = {
            b.currency: build_answer(b.message_id, answer_lines(b), parties, now)
            for b in result.batches
        }
        answers = read_answers(
            [(f"{c}.xml", data) for c, data in sorted(run.confirmations.items())], parties
        )
        confirm = ConfirmWindow(window.label, answers, ACTOR.name)
        self._retry(lambda: run_action(self.engine, confirm, ACTOR, datetime.now(UTC)), "confirm")
        self._moved("SETTLED")

    def _owed(self) -> bool:
        """Whether the window has a net to settle: some bank owes another in it."""
        with self.engine.connect() as conn:
            return any(line.net_minor for line in window_report(conn, self.window).lines)

    def _parties(self) -> Parties:
        s = self.settings
        with self.engine.connect() as conn:
            return parties_of(
                conn, s.settlement_switch_code, s.settlement_bank_code,
                s.settlement_clearing_system,
            )  # fmt: skip

    def _moved(self, state: str) -> None:
        """Record the move's time, and publish the window's rows so far."""
        self.result.window.moves.append((state, self._elapsed()))
        label = self.window.label

        def rows() -> Any:
            with self.engine.connect() as conn:
                return window_rows(conn, label).get(label, [])

        recorded = self._retry(rows, "read the window's rows")
        self._retry(lambda: publish_transitions(self.settings, recorded), "publish the window")
        self.result.window.published = len(recorded)

    # -- time ------------------------------------------------------------------------------

    def _elapsed(self) -> float:
        return time.monotonic() - self.opened

    def _wait_until(self, share: float) -> None:
        while self._elapsed() < share * self.duration_s:
            self._pause(min(POLL_S, share * self.duration_s - self._elapsed()), "its time")

    def _pause(self, seconds: float, waiting_for: str) -> None:
        if time.monotonic() + seconds > self.deadline or self.stopping.is_set():
            raise _GaveUp(f"operator: gave up waiting for {waiting_for}")
        time.sleep(max(seconds, 0.0))

    def _retry(self, attempt: Callable[[], T], what: str) -> T:
        """``attempt()`` until it succeeds: the ledger locked or the broker frozen pass."""
        while True:
            try:
                return attempt()
            except (DBAPIError, RuntimeError, OSError) as exc:
                log.info("operator: %s failed (%r); trying again", what, exc)
                self._pause(RETRY_S, f"{what} (last: {exc!r})")


class _GaveUp(Exception):
    """A step did not happen within the run's bound."""


def _movement_record(movement: Movement, at: datetime) -> dict[str, Any]:
    """The movement's event, as ``sakk liquidity`` issues it (fresh id, the operator's time)."""
    movement_id = str(uuid.uuid4())
    return {
        "event_id": movement_id, "payment_id": movement_id, "bank_code": movement.bank,
        "currency": CURRENCY, "amount_minor": movement.amount_minor, "occurred_at": at,
        "issued_by": ACTOR.name, "causation_event_id": None,
    }  # fmt: skip
