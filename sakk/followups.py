"""What follows an approved proposal outside the ledger, as the direct command does it.

An operator action writes the ledger; some commands then reach the broker or the disk:
a liquidity movement is published, a settlement's pacs.009 files are written and the
window's move published, a confirmed window's move published, a corrected dead letter
sent. Approved from a proposal (``engine.ops.proposals``), the same happens here, for
the command line (``sakk proposals approve``) and the console alike.

:func:`problem_before_approving` says what would stop the follow-up (no broker to send
a dead letter to), so that nothing is approved that cannot be carried out.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from engine.config import Settings
from engine.ops.action import Done
from engine.ops.proposals import Proposal

# What is sent to the broker the consumers read once approved: with none configured, a
# throwaway embedded one would swallow it (a deposit never posted), so approval waits.
NEEDS_BROKER = {
    "dlq.redrive.corrected": "an approved redrive",
    "liquidity.movement": "an approved funds in or out",
}
INSTRUCTIONS_DIR = "instructions"  # under the data dir: a settled window's pacs.009 files


def problem_before_approving(settings: Settings, action: str) -> str | None:
    """Why proposal's ``action`` cannot be carried out here, or None."""
    if action in NEEDS_BROKER and settings.uses_embedded_broker:
        return (
            f"set SAKK_KAFKA_BOOTSTRAP_SERVERS: {NEEDS_BROKER[action]} is sent to the broker "
            "your consumers read"
        )
    return None


def follow_up(
    settings: Settings, proposal: Proposal, done: Done[Any], approver: str, at: datetime,
    out: Path | None = None,
) -> list[str]:  # fmt: skip
    """Carry out what follows ``proposal``'s action, just approved; what was done, a line
    each. ``out``: where a settlement's pacs.009 goes (default: the data dir's
    ``instructions/``)."""
    steps: dict[str, Callable[[], list[str]]] = {
        "liquidity.movement": lambda: _publish_movement(settings, proposal, approver, at),
        "window.settle": lambda: _settled(settings, done, out),
        "window.confirm": lambda: _publish_window(settings, done.result.label),
        "dlq.redrive.corrected": lambda: _redrive(settings, proposal, approver),
    }
    step = steps.get(proposal.action)
    return [] if step is None else step()


def _publish_movement(
    settings: Settings, proposal: Proposal, approver: str, at: datetime
) -> list[str]:
    from engine.events import FUNDS_IN, FUNDS_OUT
    from sakk.app import kafka_for
    from sakk.cli.liquidity import movement_record, publish_movement

    movement = proposal.decoded()
    event = FUNDS_IN if movement.kind == FUNDS_IN.name else FUNDS_OUT
    record = movement_record(movement.bank, movement.amount_minor, movement.currency, approver,
                             at, movement.movement_id)  # fmt: skip
    with kafka_for(settings) as live:
        publish_movement(live, event, record)
    return [f"published {event.name} {movement.movement_id} for bank {movement.bank}"]


def _settled(settings: Settings, done: Done[Any], out: Path | None) -> list[str]:
    from sakk.cli.settlement_windows import write_instructions

    result = done.result
    label = result.row.window_label
    if out is None:
        name = label.replace("/", "-").replace(":", "")
        out = settings.data_dir / INSTRUCTIONS_DIR / f"pacs009-{name}-{result.row.attempt}.xml"
    paths = write_instructions(out, result.instructions)
    lines = [f"{currency}: pacs.009 written to {path}" for currency, path in paths.items()]
    return lines + _publish_window(settings, label)


def _publish_window(settings: Settings, label: str) -> list[str]:
    from engine.audit.window_events import publish_transitions
    from engine.audit.window_lifecycle import window_rows
    from engine.kafka.exceptions import KafkaPlumbingError
    from sakk.app import ledger_engine

    later = f"publish it with `sakk settlement publish {label}`"
    if settings.uses_embedded_broker:
        return [f"window {label}'s move is recorded, not published: {later}"]
    engine = ledger_engine(settings)
    try:
        with engine.connect() as conn:
            rows = window_rows(conn, label).get(label, [])
        topic = publish_transitions(settings, rows)
    except KafkaPlumbingError as exc:
        return [f"window {label}'s move is recorded but not published ({exc}): {later}"]
    finally:
        engine.dispose()
    return [f"published window {label}'s transitions to {topic}"]


def _redrive(settings: Settings, proposal: Proposal, approver: str) -> list[str]:
    from engine.dlq.redrive import Redriver
    from sakk.app import ledger_engine, make_codec

    request = proposal.decoded()
    engine = ledger_engine(settings)
    try:
        codec = make_codec(settings, engine)
        with Redriver(settings, engine, codec, forced=request.forced) as redriver:
            outcome = redriver.redrive(
                request.dead_letter_id, approver, f"proposal {proposal.id}", request.body,
                request.signature,
            )  # fmt: skip
    finally:
        engine.dispose()
    return [outcome.summary]
