"""What a chaos run did and found; its last line is always ``violations: N``."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.domain.outcomes import StepOutcome
from engine.domain.states import TOLD_ANSWERS
from tooling.chaos.faults import DOWN, RANDOM_FAILURES
from tooling.chaos.invariants import HEALTHY_P99_BOUND_S, Checked

MAX_VIOLATIONS_SHOWN = 60
# A bank's figures are shown when its cap is below this (the pressing banks), else the
# report would list every bank.
NOTABLE_CAP_MINOR = 10**9
FIRST_STATES = frozenset(a.state for a in TOLD_ANSWERS)  # the others: the lifecycle's


@dataclass
class ChaosReport:
    seed: int
    database: str
    payments: int  # distinct payments published (the pressing banks' apart)
    pressing_payments: int = 0  # the pressing banks' (tooling.workload.pressing)
    poison: Counter[str] = field(default_factory=Counter)  # poison label -> messages
    bank_retries: int = 0  # byte-identical copies published
    faults: Counter[str] = field(default_factory=Counter)  # kind -> injected
    # kind -> planned but never reached: its target never came up for it in time, or an
    # armed crash point saw no batch before ARMED_TIMEOUT_S (the traffic had ended)
    missed: Counter[str] = field(default_factory=Counter)
    crash_points: Counter[str] = field(default_factory=Counter)  # point -> kills that hit it
    stalls_s: dict[str, float] = field(default_factory=dict)  # freeze/outage -> seconds, total
    webhook_modes: Counter[str] = field(default_factory=Counter)  # ok/http_500/timeout/closed/down
    down_bank: str = ""  # the bank whose endpoint was down for most of the run
    down_planned_s: float = 0.0
    down_s: float = 0.0  # as it happened: longer than planned while the flow lagged
    down_from: datetime | None = None  # UTC
    down_until: datetime | None = None
    # When the whole notification stage was held up (freezes, ledger outages, the
    # notification consumer down), UTC: the latency check leaves out what they caught.
    stage_faults: list[tuple[datetime, datetime]] = field(default_factory=list)

    graceful_exit_s: list[float] = field(default_factory=list)
    restarts: int = 0
    poison_deaths: int = 0  # consumer processes the planted poison killed before quarantine
    observed: Counter[str] = field(default_factory=Counter)  # what consumers counted riding out
    start: str = ""  # business time of the first payment: with the seed, replays the bytes
    checked: Checked = field(default_factory=Checked)
    publish_s: float = 0.0
    drain_s: float | None = None  # after the last fault; None: did not drain
    run_s: float = 0.0
    violations: list[str] = field(default_factory=list)
    # The operator's steps under faults (tooling.chaos.operator): (what, seconds since the
    # fault window opened), in order.
    operator_moves: list[tuple[str, float]] = field(default_factory=list)
    opened: datetime | None = None  # when the fault window opened (UTC)
    fault_window_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def stage_faults_s(self) -> float:
        return sum((end - start).total_seconds() for start, end in self.stage_faults)

    def render(self) -> str:
        c = self.checked
        lines = [f"Sakk chaos run: seed {self.seed}, {self.database}, {self.run_s:.1f} s"]
        if self.start:
            lines.append(
                f"replay: sakk chaos --seed {self.seed} --start {self.start} "
                f"--payments {self.payments}"
            )
        lines.append("")
        lines.append("published")
        lines.append(f"  payments              {self.payments:>8,}")
        lines.append(f"  pressing banks'       {self.pressing_payments:>8,}")
        lines.append(
            f"  poison messages       {sum(self.poison.values()):>8,}  " + _kinds(self.poison)
        )
        lines.append(f"  bank retries (copies) {self.bank_retries:>8,}")
        lines.append(f"  in                    {self.publish_s:>8.1f} s")
        lines.append("faults injected")
        for kind, count in sorted(self.faults.items()):
            lines.append(f"  {kind:<21} {count:>8,}  {self._fault_detail(kind)}".rstrip())
        lines.append(f"  consumer restarts     {self.restarts:>8,}")
        lines.append(f"  killed by the poison  {self.poison_deaths:>8,}")
        if self.missed:
            lines.append(
                f"  planned, not reached  {sum(self.missed.values()):>8,}  " + _kinds(self.missed)
            )
        if self.observed:
            lines.append("ridden out (consumer metrics)")
            for what, count in sorted(self.observed.items()):
                lines.append(f"  {what:<21} {count:>8,}")
        lines.append("checked")
        lines.append(
            f"  payments              {c.payments:>8,}  settled {c.states['SETTLED']:,}, "
            f"rejected {c.states['REJECTED']:,}, failed {c.states['FAILED']:,}"
        )
        lines += self._lifecycle_lines()
        lines.append(f"  dead-lettered         {c.dead_lettered:>8,}")
        lines.append(f"  postings              {c.postings:>8,}  over {c.accounts:,} accounts")
        lines.append(
            f"  notifications         {sum(c.notifications.values()):>8,}  "
            + _kinds(c.notifications)
        )
        lines.append(
            f"  events on the wire    {c.wire_events:>8,}  plus {c.wire_duplicates:,} "
            "repeated copies (no effect)"
        )
        lines += self._risk_lines()
        lines += self._latency_lines()
        drain = (
            "did not drain"
            if self.drain_s is None
            else f"{self.drain_s:.1f} s after the last fault"
        )
        lines.append(f"time to drain: {drain}")
        if self.violations:
            lines.append("")
            lines += [f"VIOLATION {v}" for v in self.violations[:MAX_VIOLATIONS_SHOWN]]
            if len(self.violations) > MAX_VIOLATIONS_SHOWN:
                lines.append(f"... and {len(self.violations) - MAX_VIOLATIONS_SHOWN} more")
        lines.append(f"violations: {len(self.violations)}")
        return "\n".join(lines)

    def _lifecycle_lines(self) -> list[str]:
        """The lifecycle: payments by later state, steps by kind and outcome, holds."""
        c = self.checked
        later = Counter({s: n for s, n in c.states.items() if s not in FIRST_STATES})
        if not later and not c.steps:
            return []
        applied = Counter(
            {k.split()[0].lower(): n for k, n in c.steps.items() if StepOutcome.APPLIED in k}
        )
        refused = sum(c.refusals.values())
        return [
            f"    of which later      {sum(later.values()):>8,}  " + _kinds(later).lower(),
            f"  lifecycle steps       {sum(c.steps.values()):>8,}  applied "
            f"{sum(applied.values()):,} ({_kinds(applied)}), refused {refused:,} "
            f"({_kinds(c.refusals)})",
            f"  holds                 {sum(c.holds.values()):>8,}  " + _kinds(c.holds).lower(),
        ]

    def _risk_lines(self) -> list[str]:
        """The pressing banks, the movements, the windows (tooling.chaos.risk_checks)."""
        r = self.checked.risk
        lines = [
            f"  limit refusals        {sum(r.refusals.values()):>8,}  "
            + _kinds(r.refusals)
            + f"; settled {_kinds(r.settled)}; told {r.told:,}",
            f"  funds movements       {sum(r.movements.values()):>8,}  " + _kinds(r.movements),
            f"  cap alerts            {sum(r.cap_alerts.values()):>8,}  " + _kinds(r.cap_alerts),
            f"  windows               {len(r.windows):>8,}  "
            + ", ".join(f"{label} {state}" for label, state in r.windows.items()),
        ]
        if self.operator_moves:
            lines.append(
                "  operator (s into the fault window) "
                + ", ".join(f"{what} {at:.1f}" for what, at in self.operator_moves)
            )
            span = f"{self.fault_window_s:.0f} s{self._outage_span()}"
            lines.append(f"    faults: the window's {span}")
        for key, figures in sorted(r.positions.items()):
            if figures["cap_minor"] < NOTABLE_CAP_MINOR:
                lines.append(
                    f"  bank {key:<16} exposure {figures['exposure_minor']:,} of cap "
                    f"{figures['cap_minor']:,}, liquidity {figures['liquidity_minor']:,}"
                )
        if r.journal is not None:
            lines.append(f"  position changes      {r.journal:>8,}  walked in write order")
        return lines

    def _outage_span(self) -> str:
        """When the bank outage ran, in the operator's clock (seconds into the window)."""
        if self.opened is None or self.down_from is None or self.down_until is None:
            return ""
        start = (self.down_from - self.opened).total_seconds()
        end = (self.down_until - self.opened).total_seconds()
        return (f"; bank {self.down_bank} down from {start:.1f} to {end:.1f} s; webhook "
                "failures throughout")  # fmt: skip

    def _latency_lines(self) -> list[str]:
        latency = self.checked.latency
        if latency is None:
            return []
        among = (
            f"notifications created while bank {latency.down_bank} was down"
            if latency.down_bank and self.down_until is not None
            else "every notification"
        )
        lines = [
            f"delivery latency p99 (created -> accepted, recorded attempts), {among}",
            f"  {'healthy banks':<28} {_seconds(latency.healthy_p99_s):>9}  over "
            f"{latency.healthy_count:,} no stage-wide fault caught in flight, "
            f"max {_seconds(latency.healthy_max_s)}, bound {HEALTHY_P99_BOUND_S:.0f} s",
            f"  {'healthy banks, all':<28} {_seconds(latency.healthy_all_p99_s):>9}  over "
            f"{latency.healthy_all_count:,} (stage-wide faults {self.stage_faults_s:.1f} s "
            "in all)",
        ]
        if latency.down_bank:
            down = f"bank {latency.down_bank} (down {self.down_s:.1f} s)"
            lines.append(
                f"  {down:<28} {_seconds(latency.down_p99_s):>9}  over {latency.down_count:,}"
            )
        return lines

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready values: the figures, the latencies, every violation."""
        c, latency = self.checked, self.checked.latency
        return {
            "seed": self.seed, "database": self.database, "payments": self.payments,
            "pressing_payments": self.pressing_payments,
            "start": self.start, "run_s": round(self.run_s, 1),
            "publish_s": round(self.publish_s, 1),
            "drain_s": None if self.drain_s is None else round(self.drain_s, 1),
            "poison": dict(self.poison), "bank_retries": self.bank_retries,
            "faults": dict(self.faults), "crash_points": dict(self.crash_points),
            "missed": dict(self.missed),
            "stalls_s": {k: round(v, 2) for k, v in self.stalls_s.items()},
            "webhook_modes": dict(self.webhook_modes),
            "slowest_graceful_exit_s": round(max(self.graceful_exit_s, default=0.0), 1),
            "restarts": self.restarts, "poison_deaths": self.poison_deaths,
            "observed": dict(self.observed),
            "bank_outage": {
                "bank": self.down_bank or None, "planned_s": round(self.down_planned_s, 1),
                "duration_s": round(self.down_s, 1),
                "from": self.down_from and self.down_from.isoformat(),
                "until": self.down_until and self.down_until.isoformat(),
                "requests_held": self.webhook_modes.get(DOWN, 0),
            },
            "checked": {
                "payments": c.payments, "states": dict(c.states),
                "dead_lettered": c.dead_lettered, "postings": c.postings,
                "accounts": c.accounts, "notifications": dict(c.notifications),
                "wire_events": c.wire_events, "wire_duplicates": c.wire_duplicates,
                "steps": dict(c.steps), "refusals": dict(c.refusals), "holds": dict(c.holds),
                "risk": {
                    "limit_refusals": dict(c.risk.refusals),
                    "pressing_settled": dict(c.risk.settled), "refusals_told": c.risk.told,
                    "movements": dict(c.risk.movements), "cap_alerts": dict(c.risk.cap_alerts),
                    "windows": dict(c.risk.windows), "settled_nets": dict(c.risk.settled_nets),
                    "positions": dict(c.risk.positions), "position_changes": c.risk.journal,
                    "operator": [[what, round(at, 1)] for what, at in self.operator_moves],
                },
            },
            "delivery_latency": None if latency is None else {
                "healthy_p99_bound_s": HEALTHY_P99_BOUND_S,
                "healthy": {
                    "notifications": latency.healthy_count,
                    "p99_s": _rounded(latency.healthy_p99_s),
                    "max_s": _rounded(latency.healthy_max_s),
                },
                "healthy_all": {
                    "notifications": latency.healthy_all_count,
                    "p99_s": _rounded(latency.healthy_all_p99_s),
                },
                "stage_faults_s": round(self.stage_faults_s, 1),
                "stage_faults": [[a.isoformat(), b.isoformat()] for a, b in self.stage_faults],
                "down": {
                    "bank": latency.down_bank, "notifications": latency.down_count,
                    "p99_s": _rounded(latency.down_p99_s),
                },
            },
            "violations": list(self.violations),
            "ok": self.ok,
        }  # fmt: skip

    def _fault_detail(self, kind: str) -> str:
        if kind == "crash_point":
            return _kinds(self.crash_points)
        if kind in self.stalls_s:
            return f"{self.stalls_s[kind]:.1f} s in total"
        if kind == "bank_outage" and self.down_bank:
            held = self.webhook_modes.get(DOWN, 0)
            return (
                f"bank {self.down_bank}, {self.down_s:.1f} s (planned {self.down_planned_s:.1f} s)"
                f", {held:,} requests held unanswered"
            )
        if kind == "webhook_failure":
            return _kinds(
                Counter({k: v for k, v in self.webhook_modes.items() if k in RANDOM_FAILURES})
            )
        if kind == "graceful_stop" and self.graceful_exit_s:
            return f"slowest exit {max(self.graceful_exit_s):.1f} s"
        return ""


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} s"


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _kinds(counts: Counter[str]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items()))
