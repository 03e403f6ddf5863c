"""What a benchmark run must satisfy before any figure of it is reported.

Every run drains (each published message reaches a terminal state or the dead-letter
topic, and every notification is finished), then its counts must add up and its ledger
must balance; a run may also have to pass the auditor's hash-chain verification. A run
that fails raises :class:`BenchmarkCheckError`: a figure from a wrong run is no figure.
"""

from __future__ import annotations

from sqlalchemy import Engine

from engine.ledger.checks import check_ledger, flow_counts
from engine.supervisor import Fleet
from sakk.app import TOPOLOGY
from tooling import drain
from tooling.drain import DrainState

DRAIN_TIMEOUT_S = 900.0
DRAIN_POLL_S = 0.25
MAX_PROBLEMS_SHOWN = 3


class BenchmarkCheckError(RuntimeError):
    """The run's ledger or counts are wrong: no figure is reported for it."""


def wait_drained(engine: Engine, published: int, fleet: Fleet) -> None:
    """Until ``published`` messages are terminal or dead-lettered and notifications finished."""

    def consumers_alive(state: DrainState) -> None:
        dead = None if state.done else fleet.check_alive()
        if dead:
            raise BenchmarkCheckError(
                f"consumer exited during the run: {dead} (logs in {fleet.log_dir})"
            )

    state = drain.wait_drained(
        engine, drain.Drain(published), DRAIN_TIMEOUT_S, DRAIN_POLL_S, consumers_alive
    )
    if not state.done:
        raise BenchmarkCheckError(f"flow did not drain within {DRAIN_TIMEOUT_S:.0f}s")


def verify(engine: Engine, published: int, chain: bool = False) -> int | None:
    """Counts add up and the ledger balances; with ``chain``, the hash chain too.

    Returns the number of ledger entries the chain verification walked (None without it).
    """
    with engine.connect() as conn:
        counts = flow_counts(conn, TOPOLOGY.entry.name)
        ledger = check_ledger(conn)
    if published != counts.terminal + counts.dead_lettered:
        raise BenchmarkCheckError(
            f"published {published} != settled {counts.settled} + rejected {counts.rejected} + "
            f"failed {counts.failed} + dead-lettered {counts.dead_lettered}"
        )
    if not ledger.ok:
        raise BenchmarkCheckError(
            f"ledger does not balance: {ledger.violations[:MAX_PROBLEMS_SHOWN]}"
        )
    return verify_chain(engine) if chain else None


def verify_chain(engine: Engine) -> int:
    """The auditor's verification (``sakk audit verify``): chain, double entry, windows."""
    from engine.audit.chain import verify as audit_verify

    with engine.connect() as conn:  # the fleet has stopped: nothing else writes
        report = audit_verify(conn)
    if not report.ok:
        problems = [b.problem for b in report.walk.breaks] + report.ledger.violations
        problems += report.lifecycle.violations + report.window_problems + report.anchor_problems
        raise BenchmarkCheckError(
            f"audit verification failed: {problems[:MAX_PROBLEMS_SHOWN]} ({report.summary()})"
        )
    return report.walk.entries
