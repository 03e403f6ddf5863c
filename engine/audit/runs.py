"""Audit runs as recorded: each ``audit verify``, ``replay`` and ``reconcile`` that ended.

A run is written once, as it ended (``audit_runs`` is append-only), with who ran it, from
where (the command line or the console), what it covered, its outcome and its report.
The report is JSON cut to :data:`MAX_REPORT_CHARS`: the summary always, then each
section's rows in order while they fit; a cut report says so (``cut``: rows kept of each
section) and the row keeps the whole report's length. The whole report is the command's
``--out`` / ``--format json``: recording never replaces it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, insert

from engine.audit.export import jsonable
from engine.ledger.models import AuditRun, table_of

RUNS = table_of(AuditRun)
KINDS = ("verify", "replay", "reconcile")
OK, DIFFERENCES, FAILED = "OK", "DIFFERENCES", "FAILED"
MAX_REPORT_CHARS = 256 * 1024  # a run's report as kept: enough for hundreds of findings
MAX_SUMMARY_CHARS = 32 * 1024  # of which the summary at most (else it is cut to a note)
MAX_ERROR_CHARS = 2_000  # a failed run's reason
MAX_ACTOR_CHARS = 64  # audit_runs.actor is String(64)


class AuditRunError(ValueError):
    """A run that cannot be recorded as given (its kind, actor or times)."""


@dataclass(frozen=True)
class FinishedRun:
    kind: str  # verify | replay | reconcile
    actor: str
    via: str  # cli | console
    started_at: datetime
    finished_at: datetime
    options: Mapping[str, Any]
    outcome: str  # OK | DIFFERENCES | FAILED
    differences: int = 0
    counts: Mapping[str, int] = field(default_factory=dict)
    summary: Mapping[str, Any] | None = None
    sections: Mapping[str, list[Any]] = field(default_factory=dict)
    error: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise AuditRunError(f"kind {self.kind!r}: expected one of {', '.join(KINDS)}")
        if not 1 <= len(self.actor) <= MAX_ACTOR_CHARS:
            raise AuditRunError(f"actor: 1..{MAX_ACTOR_CHARS} characters")
        if self.outcome not in (OK, DIFFERENCES, FAILED):
            raise AuditRunError(f"outcome {self.outcome!r}")
        if self.finished_at < self.started_at:
            raise AuditRunError("a run finishes after it starts")


def outcome_of(ok: bool) -> str:
    return OK if ok else DIFFERENCES


# The counts of findings in a verify's summary (engine.audit.chain.VerifyReport.summary).
VERIFY_FINDINGS = ("chain_breaks", "ledger_violations", "lifecycle_violations",
                   "window_problems", "anchor_problems", "settlement_problems",
                   "cap_violations", "journal_problems", "operator_action_problems")  # fmt: skip


def verify_findings(summary: Mapping[str, Any]) -> int:
    return sum(int(summary.get(k) or 0) for k in VERIFY_FINDINGS)


def integer_counts(summary: Mapping[str, Any]) -> dict[str, int]:
    """The figures of a summary: its integer values (booleans are not figures)."""
    return {k: v for k, v in summary.items() if isinstance(v, int) and not isinstance(v, bool)}


def bounded_report(
    summary: Mapping[str, Any] | None,
    sections: Mapping[str, list[Any]],
    limit: int = MAX_REPORT_CHARS,
) -> tuple[str | None, int, bool]:
    """The report as kept, the whole report's length, and whether it was cut."""
    if summary is None and not sections:
        return None, 0, False
    whole = _dumps({"summary": jsonable(summary), "sections": jsonable(sections)})
    if len(whole) <= limit:
        return whole, len(whole), False
    kept_summary = jsonable(summary)
    if len(_dumps(kept_summary)) > MAX_SUMMARY_CHARS:
        kept_summary = {"cut": "the summary was longer than the bound"}
    budget = limit - len(_dumps(kept_summary)) - 200 - 40 * len(sections)
    kept: dict[str, list[Any]] = {}
    cut: dict[str, str] = {}
    for name, rows in sections.items():
        kept[name] = []
        for row in rows:
            text = _dumps(jsonable(row))
            if len(text) + 2 > budget:
                break
            budget -= len(text) + 2
            kept[name].append(jsonable(row))
        if len(kept[name]) < len(rows):
            cut[name] = f"{len(kept[name])} of {len(rows)}"
    report = {"summary": kept_summary, "sections": kept, "cut": cut, "whole_chars": len(whole)}
    return _dumps(report), len(whole), True


def record_run(target: Engine | Connection, run: FinishedRun) -> int:
    """Write ``run`` once; returns its id."""
    report, chars, cut = bounded_report(run.summary, run.sections)
    row = {
        "kind": run.kind, "actor": run.actor, "via": run.via, "started_at": run.started_at,
        "finished_at": run.finished_at, "options": _dumps(jsonable(dict(run.options))),
        "outcome": run.outcome, "differences": max(run.differences, 0),
        "counts": _dumps(dict(run.counts)), "report": report, "report_chars": chars,
        "report_cut": cut, "error": run.error[:MAX_ERROR_CHARS] if run.error else None,
    }  # fmt: skip
    if isinstance(target, Connection):
        return _insert(target, row)
    with target.begin() as conn:
        return _insert(conn, row)


def _insert(conn: Connection, row: dict[str, Any]) -> int:
    return int(conn.execute(insert(RUNS).values(**row).returning(RUNS.c.id)).scalar_one())


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
