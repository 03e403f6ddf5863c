"""Settling a closed window: the instruction out, the confirmation checked, or an abort.

- :func:`settle_window` builds one pacs.009 per currency from the nets the close recorded
  (``settlement_window_positions``: final, never recomputed), hands them to the caller to
  write, and moves the window to SETTLING in the same transaction: if the files cannot be
  written, nothing is recorded.
- :func:`confirm_window` reads the settlement bank's pacs.002 answers, one per currency,
  and checks each against the attempt's instruction (:func:`engine.risk.confirmation.confirm`).
  Every difference of every file is listed; any one refuses the whole confirmation and
  the window stays SETTLING. Otherwise one transaction writes the SETTLED row and each
  bank's settled net (``window_settlements``), which lowers its exposure.
- :func:`abort_window` moves SETTLING to ABORTED; a new settle is a new attempt, whose
  instructions have new message ids, so a late answer to the aborted one is refused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, select

from engine.audit.window_lifecycle import (
    Transition,
    WindowEventRow,
    allowed_now,
    record_settlements,
    record_transition,
    window_rows,
)
from engine.iso.errors import IsoError
from engine.ledger.models import Bank, SettlementWindowPosition, table_of
from engine.read.exceptions import WindowError
from engine.risk.confirmation import (
    Confirmation,
    ConfirmationRefused,
    answer_lines,
    build_answer,
    confirm,
    read_confirmation,
)
from engine.risk.instruction import Parties, SettlementBatch, build_instruction
from engine.risk.windows import WindowEvent, WindowState

MAX_CONFIRMATION_FILES = 64  # one per currency of a window: far more than Sakk settles


def parties_of(conn: Connection, switch: str, settlement_bank: str, clearing: str) -> Parties:
    """Who the instruction names: the BICs are the banks' reference data."""
    b = table_of(Bank)
    bics = {code: bic for code, bic in conn.execute(select(b.c.code, b.c.bic)) if bic}
    return Parties(switch, settlement_bank, bics, clearing)


def window_batches(conn: Connection, label: str, attempt: int) -> list[SettlementBatch]:
    """The window's batches, one per currency in code order, from the nets of its close.

    Position sign: a bank's net in the batch is minus the close's ``net_minor``.
    """
    t = table_of(SettlementWindowPosition)
    nets: dict[str, dict[str, int]] = {}
    rows = conn.execute(
        select(t.c.bank_code, t.c.currency, t.c.net_minor).where(t.c.label == label)
    )
    for bank, currency, net in rows:
        nets.setdefault(currency, {})[bank] = -int(net)
    return [SettlementBatch.of(label, attempt, c, nets[c]) for c in sorted(nets)]


def _sha256(documents: Sequence[bytes]) -> str:
    digest = hashlib.sha256()
    for document in documents:
        digest.update(hashlib.sha256(document).digest())
    return digest.hexdigest()


@dataclass(frozen=True)
class SettleResult:
    row: WindowEventRow
    batches: tuple[SettlementBatch, ...]
    instructions: Mapping[str, bytes]  # currency -> the pacs.009


def settle_window(
    engine: Engine,
    label: str,
    parties: Parties,
    actor: str,
    now: datetime,
    write: Callable[[Mapping[str, bytes]], None],
) -> SettleResult:
    """:func:`settle_in` in a transaction of its own."""
    with engine.begin() as conn:
        return settle_in(conn, label, parties, actor, now, write)


def settle_in(
    conn: Connection,
    label: str,
    parties: Parties,
    actor: str,
    now: datetime,
    write: Callable[[Mapping[str, bytes]], None],
) -> SettleResult:
    """Instruct the settlement bank for ``label`` and move it to SETTLING, in the caller's
    transaction.

    ``write`` receives the instructions by currency before the transaction ends; if it
    raises, nothing is recorded. Refused (TransitionRefused) unless the window is CLOSED
    or ABORTED; refused (WindowError) when no bank has anything to move.
    """
    attempt = allowed_now(conn, label, WindowEvent.SETTLE).attempt + 1
    batches = [b for b in window_batches(conn, label, attempt) if b.lines]
    if not batches:
        raise WindowError(f"window {label}: no bank has a net to settle")
    instructions = {b.currency: build_instruction(b, parties, now, now.date()) for b in batches}
    details = Transition(
        actor,
        tuple(b.message_id for b in batches),
        _sha256([instructions[b.currency] for b in batches]),
    )
    row = record_transition(conn, label, WindowEvent.SETTLE, details, now)
    write(instructions)
    return SettleResult(row, tuple(batches), instructions)


@dataclass(frozen=True)
class ConfirmResult:
    """The verdict on a confirmation: ``row`` when the window became SETTLED, else every
    difference (each already a readable sentence, its currency or file named)."""

    label: str
    row: WindowEventRow | None
    differences: tuple[str, ...]
    settled: Mapping[tuple[str, str], int]  # (bank, currency) -> net, position sign

    @property
    def ok(self) -> bool:
        return self.row is not None


@dataclass(frozen=True)
class Answer:
    """One confirmation file as read: its name, bytes, and what it says or why unusable."""

    name: str
    data: bytes
    confirmation: Confirmation | None
    problem: str | None = None


def read_answers(files: Sequence[tuple[str, bytes]], parties: Parties) -> list[Answer]:
    """Each file read as a pacs.002 confirmation; an unusable one carries its problem."""
    if not 0 < len(files) <= MAX_CONFIRMATION_FILES:
        raise WindowError(f"{len(files)} confirmation files: expected 1..{MAX_CONFIRMATION_FILES}")
    answers = []
    for name, data in files:
        try:
            answers.append(Answer(name, data, read_confirmation(data, parties)))
        except IsoError as exc:
            answers.append(Answer(name, data, None, f"{name}: not a usable pacs.002: {exc}"))
    return answers


def confirm_window(
    engine: Engine, answers: Sequence[Answer], actor: str, now: datetime, label: str | None = None
) -> ConfirmResult:
    """:func:`confirm_in` in a transaction of its own."""
    with engine.begin() as conn:
        return confirm_in(conn, answers, actor, now, label or window_answered(conn, answers))


def confirm_in(
    conn: Connection, answers: Sequence[Answer], actor: str, now: datetime, label: str
) -> ConfirmResult:
    """Check ``answers`` against the window's current attempt; settle it whole or not at
    all, in the caller's transaction (nothing is written when any difference is found)."""
    record = allowed_now(conn, label, WindowEvent.CONFIRM)
    batches = [b for b in window_batches(conn, label, record.attempt) if b.lines]
    differences = _differences(batches, answers)
    settled = {(line.bank, b.currency): line.net_minor for b in batches for line in b.lines}
    if differences:
        return ConfirmResult(label, None, tuple(differences), {})
    details = Transition(
        actor, tuple(b.message_id for b in batches), _sha256([a.data for a in answers])
    )
    row = record_transition(conn, label, WindowEvent.CONFIRM, details, now)
    record_settlements(conn, label, settled, now)
    return ConfirmResult(label, row, (), settled)


def answer_differences(conn: Connection, label: str, answers: Sequence[Answer]) -> list[str]:
    """Every difference between ``answers`` and SETTLING window ``label``'s current attempt,
    as :func:`confirm_in` finds them, writing nothing (TransitionRefused: not SETTLING)."""
    record = allowed_now(conn, label, WindowEvent.CONFIRM)
    return _differences(
        [b for b in window_batches(conn, label, record.attempt) if b.lines], answers
    )


def window_answered(conn: Connection, answers: Sequence[Answer]) -> str:
    """The SETTLING window whose instructions ``answers`` name, or the only one SETTLING
    (so that a wrong answer's differences are listed against it); else WindowError."""
    named = {i for a in answers if a.confirmation for i in a.confirmation.instruction_ids}
    settling: list[str] = []
    for label, rows in window_rows(conn).items():
        last = rows[-1]
        if last.state is WindowState.SETTLING:
            settling.append(label)
            if named & set(last.details.instruction_ids):
                return label
    if len(settling) == 1:
        return settling[0]
    raise WindowError(
        "the confirmation names no SETTLING window's instruction; windows settling: "
        f"{', '.join(sorted(settling)) or 'none'}: name one with --window"
    )


def _differences(batches: Sequence[SettlementBatch], answers: Sequence[Answer]) -> list[str]:
    """Every difference: each batch against the answer naming its instruction (or, when
    none does, an answer naming no batch of this window), every file left over."""
    found = [a.problem for a in answers if a.problem]
    readable = [a for a in answers if a.confirmation is not None]
    ids = {b.message_id for b in batches}
    unmatched = [a for a in readable if not ids & set(_named(a))]
    for batch in batches:
        answer = next((a for a in readable if batch.message_id in _named(a)), None)
        if answer is None and unmatched:
            answer = unmatched.pop(0)
        if answer is None:
            found.append(f"{batch.currency}: no confirmation answers instruction "
                         f"{batch.message_id}")  # fmt: skip
            continue
        readable.remove(answer)
        verdict = confirm(batch, answer.confirmation or Confirmation((), None, ()))
        if isinstance(verdict, ConfirmationRefused):
            found += [f"{batch.currency} ({answer.name}): {d}" for d in verdict.differences]
    for answer in readable:
        named = ", ".join(_named(answer)) or "no instruction"
        found.append(f"{answer.name}: answers {named}, no instruction of this attempt")
    return found


def _named(answer: Answer) -> tuple[str, ...]:
    return answer.confirmation.instruction_ids if answer.confirmation else ()


def abort_window(
    engine: Engine, label: str, reason: str, actor: str, now: datetime
) -> WindowEventRow:
    """:func:`abort_in` in a transaction of its own."""
    with engine.begin() as conn:
        return abort_in(conn, label, reason, actor, now)


def abort_in(
    conn: Connection, label: str, reason: str, actor: str, now: datetime
) -> WindowEventRow:
    """SETTLING to ABORTED, with the reason; the nets stay, a new settle may follow."""
    if not reason.strip():
        raise WindowError("an abort needs its reason")
    return record_transition(
        conn, label, WindowEvent.ABORT, Transition(actor, reason=reason.strip()), now
    )


def settle_as_instructed(
    engine: Engine, label: str, parties: Parties, actor: str, now: datetime
) -> ConfirmResult:
    """Settle a CLOSED window with a settlement bank that does exactly as instructed: the
    instructions, the faithful pacs.002 answers (``build_answer``), their check. For the
    demo and the chaos run, which play the settlement bank; never for a real window."""
    result = settle_window(engine, label, parties, actor, now, lambda _: None)
    files = [
        (f"{b.currency}.xml", build_answer(b.message_id, answer_lines(b), parties, now))
        for b in result.batches
    ]
    return confirm_window(engine, read_answers(files, parties), actor, now, label)
