"""``sakk settlement settle|confirm|abort|publish|positions``: windows settled, positions.

Each command moves the window one step in its lifecycle (``engine.risk.windows``), records
the step as an append-only row in the ledger, then publishes it on ``settlement.windows``
(``--no-publish``: later, with ``sakk settlement publish``). Refusals exit with status 1
and say why; ``--json`` prints the outcome as one JSON document.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from sqlalchemy import Engine

from engine.audit.export import jsonable
from engine.audit.urls import as_database_url
from engine.audit.window_lifecycle import (
    TransitionRefused,
    WindowEventRow,
    window_rows,
)
from engine.audit.window_settlement import (
    Answer,
    ConfirmResult,
    SettleResult,
    parties_of,
    read_answers,
    window_answered,
)
from engine.audit.windows import Window
from engine.config import Settings
from engine.kafka.exceptions import KafkaPlumbingError
from engine.ledger.database import make_engine
from engine.ops.action import ActionRefusedError, Actor, run_action
from engine.ops.windows import AbortWindow, ConfirmationRefusedError, ConfirmWindow, SettleWindow
from engine.read.exceptions import WindowError
from engine.risk.instruction import Parties
from sakk.cli.options import actor_of, actor_options, file_proposal, propose_options
from sakk.cli.settlement import (
    _database_option,
    _hours_option,
    settlement,
)

MAX_CONFIRMATION_BYTES = 8 * 1024 * 1024  # a pacs.002 of MAX_LINES lines fits in far less


def lifecycle_options(f: Any) -> Any:
    """``--by``, ``--reason``, ``--json``, ``--no-publish``, ``--database-url``: every
    lifecycle command's; each move is an operator action, in the audit log."""
    f = actor_options(f)
    f = click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")(f)
    f = click.option(
        "--no-publish", is_flag=True, help="Record in the ledger only; publish it later."
    )(f)
    return _database_option(f)


def ledger_of(settings: Settings, database: str | None, no_publish: bool) -> Engine:
    if settings.uses_embedded_broker and not no_publish:
        raise click.UsageError(
            "set SAKK_KAFKA_BOOTSTRAP_SERVERS to publish the window's events, "
            "or record them only with --no-publish"
        )
    return make_engine(as_database_url(database) if database else settings.ledger_url)


def parties(settings: Settings, engine: Engine) -> Parties:
    with engine.connect() as conn:
        return parties_of(
            conn,
            settings.settlement_switch_code,
            settings.settlement_bank_code,
            settings.settlement_clearing_system,
        )


def publish_window(settings: Settings, engine: Engine, label: str) -> str:
    """Publish every transition of ``label`` (repeats are harmless: ids are stable)."""
    from engine.audit.window_events import publish_transitions

    with engine.connect() as conn:
        rows = window_rows(conn, label).get(label, [])
    try:
        return publish_transitions(settings, rows)
    except KafkaPlumbingError as exc:
        raise click.ClickException(
            f"window {label}'s move is recorded but not published: {exc}; "
            f"publish it with `sakk settlement publish {label}`"
        ) from exc


def refuse(as_json: bool, label: str | None, problems: list[str]) -> None:
    """Say why nothing was done, and exit 1."""
    if as_json:
        click.echo(json.dumps({"window": label, "ok": False, "problems": problems}, indent=2))
    else:
        for problem in problems:
            click.echo(f"refused: {problem}", err=True)
    raise SystemExit(1)


def report(as_json: bool, outcome: Mapping[str, Any], text: str) -> None:
    click.echo(json.dumps(jsonable({"ok": True, **outcome}), indent=2) if as_json else text)


def label_of(text: str, hours: str) -> str:
    try:
        return Window.parse(text, int(hours)).label
    except WindowError as exc:
        raise click.UsageError(str(exc)) from exc


def write_instructions(out: Path, instructions: Mapping[str, bytes]) -> dict[str, Path]:
    """Each currency's pacs.009: ``out`` itself for one currency, ``out`` with the currency
    before its suffix for several. Written whole (a temporary file renamed)."""
    paths = {c: out if len(instructions) == 1 else out.with_suffix(f".{c}{out.suffix}")
             for c in instructions}  # fmt: skip
    for currency, path in paths.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_bytes(instructions[currency])
        os.replace(temporary, path)
    return paths


@settlement.command("settle")
@click.argument("window_text", metavar="WINDOW")
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the pacs.009 (one file per currency: FILE.CUR.xml for several); "
    "required unless --propose.",
)  # fmt: skip
@_hours_option
@lifecycle_options
@propose_options
@click.pass_obj
def settlement_settle(
    settings: Settings, window_text: str, out: Path | None, hours: str, database: str | None,
    no_publish: bool, as_json: bool, by: str | None, reason: str | None, propose: bool,
    expires_in_s: int,
) -> None:  # fmt: skip
    """Instruct the settlement bank for a CLOSED (or ABORTED) window: SETTLING.

    Writes one pacs.009 per currency carrying each bank's net as the close recorded it;
    each new attempt after an abort has new message ids. --propose: four eyes, settled
    once another operator approves it (sakk proposals approve ID --out FILE).
    """
    label, actor = label_of(window_text, hours), actor_of(by, reason)
    if propose:
        _propose(settings, database, expires_in_s, as_json, actor,
                 lambda engine: SettleWindow(label, parties(settings, engine), actor.name,
                                             _nowhere))  # fmt: skip
        return
    if out is None:
        raise click.UsageError("--out FILE: where to write the pacs.009")
    engine = ledger_of(settings, database, no_publish)
    written: dict[str, Path] = {}
    try:

        def write(instructions: Mapping[str, bytes]) -> None:
            written.update(write_instructions(out, instructions))

        action = SettleWindow(label, parties(settings, engine), actor.name, write)
        result: SettleResult = run_action(engine, action, actor, datetime.now(UTC)).result
        topic = None if no_publish else publish_window(settings, engine, label)
    except (TransitionRefused, WindowError, ActionRefusedError) as exc:
        refuse(as_json, label, [str(exc)])
        return
    finally:
        engine.dispose()
    lines = [{"currency": b.currency, "instruction_id": b.message_id,
              "file": str(written[b.currency]), "nets": {x.bank: x.net_minor for x in b.lines}}
             for b in result.batches]  # fmt: skip
    report(
        as_json,
        {"window": label, "state": result.row.state, "attempt": result.row.attempt,
         "instructions": lines, "published_to": topic},
        "\n".join([f"window {label} is SETTLING (attempt {result.row.attempt})"]
                  + [f"  {x['currency']}: {x['instruction_id']} written to {x['file']}"
                     for x in lines]),
    )  # fmt: skip


@settlement.command("confirm")
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path)
)
@click.option(
    "--window", "window_text", metavar="WINDOW",
    help="The window confirmed (default: the one whose instructions the files answer).",
)  # fmt: skip
@_hours_option
@lifecycle_options
@propose_options
@click.pass_obj
def settlement_confirm(
    settings: Settings, files: tuple[Path, ...], window_text: str | None, hours: str,
    database: str | None, no_publish: bool, as_json: bool, by: str | None, reason: str | None,
    propose: bool, expires_in_s: int,
) -> None:  # fmt: skip
    """Check the settlement bank's pacs.002 answers (one per currency): SETTLED, or refused
    whole with every difference (this window, each bank once, each amount its net, sum zero).
    --propose: four eyes, checked and confirmed once another operator approves it.
    """
    label = label_of(window_text, hours) if window_text else None
    actor = actor_of(by, reason)
    for path in files:
        if path.stat().st_size > MAX_CONFIRMATION_BYTES:
            raise click.UsageError(f"{path}: over {MAX_CONFIRMATION_BYTES} bytes")
    if propose:
        _propose(settings, database, expires_in_s, as_json, actor,
                 lambda engine: _confirmation(settings, engine, files, label, actor))  # fmt: skip
        return
    engine = ledger_of(settings, database, no_publish)
    try:
        answers = read_answers([(str(p), p.read_bytes()) for p in files], parties(settings, engine))
        result = _confirm(engine, answers, actor, label)
        topic = (
            None if no_publish or not result.ok else publish_window(settings, engine, result.label)
        )
    except (TransitionRefused, WindowError, ActionRefusedError) as exc:
        refuse(as_json, label, [str(exc)])
        return
    finally:
        engine.dispose()
    _report_confirmation(as_json, result, topic)


def _confirm(
    engine: Engine, answers: list[Answer], actor: Actor, label: str | None
) -> ConfirmResult:
    """The confirmation as an audited action; refused, the result lists every difference."""
    if label is None:
        with engine.connect() as conn:
            label = window_answered(conn, answers)
    action = ConfirmWindow(label, answers, actor.name)
    try:
        done = run_action(engine, action, actor, datetime.now(UTC))
    except ConfirmationRefusedError as exc:
        return exc.result
    result: ConfirmResult = done.result
    return result


def _nowhere(_instructions: Mapping[str, bytes]) -> None:
    """A proposed settlement writes nothing: its approver writes the pacs.009."""


def _confirmation(
    settings: Settings, engine: Engine, files: tuple[Path, ...], label: str | None, actor: Actor
) -> ConfirmWindow:
    """The confirmation to propose, its answers read with the parties they name."""
    bound = parties(settings, engine)
    answers = read_answers([(str(p), p.read_bytes()) for p in files], bound)
    if label is None:
        with engine.connect() as conn:
            label = window_answered(conn, answers)
    return ConfirmWindow(label, answers, actor.name, bound)


def _propose(
    settings: Settings, database: str | None, expires_in_s: int, as_json: bool, actor: Actor,
    make: Callable[[Engine], Any],
) -> None:  # fmt: skip
    """File the action ``make`` builds as a proposal (nothing is written nor published)."""
    url = as_database_url(database) if database else settings.ledger_url
    engine = make_engine(url)
    try:
        action = make(engine)
    except (TransitionRefused, WindowError) as exc:
        refuse(as_json, None, [str(exc)])
        return
    finally:
        engine.dispose()
    file_proposal(settings, action, actor, expires_in_s, as_json, url)


def _report_confirmation(as_json: bool, result: ConfirmResult, topic: str | None) -> None:
    if not result.ok:
        refuse(as_json, result.label, list(result.differences))
    settled = [{"bank_code": bank, "currency": currency, "net_minor": net}
               for (bank, currency), net in sorted(result.settled.items())]  # fmt: skip
    report(
        as_json,
        {"window": result.label, "state": "SETTLED", "settled": settled, "published_to": topic},
        f"window {result.label} is SETTLED: {len(settled)} banks' nets confirmed; "
        f"their positions come down by them",
    )


@settlement.command("abort")
@click.argument("window_text", metavar="WINDOW")
@_hours_option
@lifecycle_options
@click.pass_obj
def settlement_abort(
    settings: Settings, window_text: str, hours: str, database: str | None,
    no_publish: bool, as_json: bool, by: str | None, reason: str | None,
) -> None:  # fmt: skip
    """SETTLING to ABORTED, for --reason (the settlement bank refused, or never answered):
    the attempt is over; settle again for a new one."""
    label, actor = label_of(window_text, hours), actor_of(by, reason)
    engine = ledger_of(settings, database, no_publish)
    try:
        action = AbortWindow(label, reason or "", actor.name)
        row: WindowEventRow = run_action(engine, action, actor, datetime.now(UTC)).result
        topic = None if no_publish else publish_window(settings, engine, label)
    except (TransitionRefused, WindowError, ActionRefusedError) as exc:
        refuse(as_json, label, [str(exc)])
        return
    finally:
        engine.dispose()
    report(
        as_json,
        {"window": label, "state": row.state, "attempt": row.attempt, "reason": row.details.reason,
         "published_to": topic},
        f"window {label} is ABORTED after attempt {row.attempt}: settle it again for a new one",
    )  # fmt: skip


@settlement.command("publish")
@click.argument("window_text", metavar="WINDOW")
@_hours_option
@_database_option
@click.pass_obj
def settlement_publish(
    settings: Settings, window_text: str, hours: str, database: str | None
) -> None:
    """Publish a window's recorded transitions on settlement.windows (again: harmless)."""
    label = label_of(window_text, hours)
    engine = ledger_of(settings, database, no_publish=False)
    try:
        topic = publish_window(settings, engine, label)
    finally:
        engine.dispose()
    click.echo(f"published window {label}'s transitions to {topic}")


# ``sakk settlement positions`` is in sakk/cli/positions.py: the banks' position rows with
# their limits.
