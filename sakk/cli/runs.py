"""Recording a run of ``audit verify``, ``replay`` or ``reconcile`` in the ledger's
``audit_runs`` (engine.audit.runs), for the console's audit screen.

Each command records the run as it ends: OK, DIFFERENCES (the findings) or FAILED (the
error), with who ran it (``--by``/``--actor``, else $SAKK_OPERATOR, else the login).
``--no-record`` runs without writing (a read-only ledger, or a copy); ``--record-in``
names another ledger to record in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import click
from sqlalchemy.exc import SQLAlchemyError

from engine.audit.runs import FAILED, AuditRunError, FinishedRun, record_run
from engine.audit.urls import as_database_url, safe_url
from engine.ledger.database import make_engine
from sakk.cli.options import OPERATOR_ENV

F = TypeVar("F", bound=Callable[..., Any])


def record_options(by_names: tuple[str, ...], where: str) -> Callable[[F], F]:
    """``--no-record``, ``--record-in URL|FILE`` and who runs it (``by_names``)."""

    def apply(command: F) -> F:
        command = click.option(
            "--record/--no-record", "record", default=True, show_default=True,
            help="Record the run in the ledger's audit runs (the console's audit screen); "
            "--no-record for a read-only ledger.",
        )(command)  # fmt: skip
        command = click.option(
            "--record-in", "record_in", metavar="URL|FILE",
            help=f"Ledger to record the run in (default: {where}).",
        )(command)  # fmt: skip
        return click.option(
            *by_names, "run_by", metavar="NAME",
            help=f"Who runs it, as recorded (default: ${OPERATOR_ENV}, else the login name).",
        )(command)  # fmt: skip

    return apply


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Recorder:
    kind: str
    actor: str
    url: str | None  # None: not recorded
    options: dict[str, Any]
    announce: bool = True  # say on stderr where the run was recorded
    started_at: datetime = field(default_factory=utc_now)
    done: bool = False

    def finish(self, outcome: str, differences: int, counts: Mapping[str, int],
               summary: Mapping[str, Any] | None, sections: Mapping[str, list[Any]],
               error: str | None = None) -> None:  # fmt: skip
        self.done = True
        if self.url is None:
            return
        run = FinishedRun(
            self.kind, self.actor, "cli", self.started_at, max(utc_now(), self.started_at),
            self.options, outcome, differences, counts, summary, sections, error,
        )  # fmt: skip
        engine = make_engine(self.url, pool_size=1)
        try:
            run_id = record_run(engine, run)
        except (SQLAlchemyError, AuditRunError) as exc:
            raise click.ClickException(
                f"the run ended ({outcome}) but could not be recorded in {safe_url(self.url)}: "
                f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]} (run `sakk db upgrade`, "
                f"or pass --no-record)"
            ) from exc
        finally:
            engine.dispose()
        if self.announce:
            click.echo(f"recorded as audit run #{run_id} in {safe_url(self.url)}", err=True)


@contextmanager
def recording(
    kind: str, actor: str, url: str | None, options: Mapping[str, Any], announce: bool = True
) -> Iterator[Recorder]:
    """A run being made; one that raises (not a usage error) is recorded as FAILED.

    ``announce``: False keeps stderr to the report (``--format json`` read whole)."""
    recorder = Recorder(kind, actor, url, dict(options), announce)
    try:
        yield recorder
    except click.UsageError:
        raise
    except Exception as exc:
        if not recorder.done:
            recorder.finish(FAILED, 0, {}, None, {}, error=f"{type(exc).__name__}: {exc}")
        raise


def record_url(record: bool, record_in: str | None, default_url: str) -> str | None:
    if not record:
        return None
    return as_database_url(record_in) if record_in else default_url
