"""What a chaos run did and found; its last line is always ``violations: N``."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from engine.chaos.invariants import Checked

MAX_VIOLATIONS_SHOWN = 60


@dataclass
class ChaosReport:
    seed: int
    database: str
    payments: int  # distinct payments published
    poison: Counter[str] = field(default_factory=Counter)  # poison label -> messages
    bank_retries: int = 0  # byte-identical copies published
    faults: Counter[str] = field(default_factory=Counter)  # kind -> injected
    crash_points: Counter[str] = field(default_factory=Counter)  # point -> kills that hit it
    stalls_s: dict[str, float] = field(default_factory=dict)  # freeze/outage -> seconds, total
    webhook_modes: Counter[str] = field(default_factory=Counter)  # ok/http_500/timeout/closed
    graceful_exit_s: list[float] = field(default_factory=list)
    restarts: int = 0
    observed: Counter[str] = field(default_factory=Counter)  # what consumer logs show they rode out
    start: str = ""  # business time of the first payment: with the seed, replays the bytes
    checked: Checked = field(default_factory=Checked)
    publish_s: float = 0.0
    drain_s: float | None = None  # after the last fault; None: did not drain
    run_s: float = 0.0
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

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
        lines.append(
            f"  poison messages       {sum(self.poison.values()):>8,}  " + _kinds(self.poison)
        )
        lines.append(f"  bank retries (copies) {self.bank_retries:>8,}")
        lines.append(f"  in                    {self.publish_s:>8.1f} s")
        lines.append("faults injected")
        for kind, count in sorted(self.faults.items()):
            lines.append(f"  {kind:<21} {count:>8,}  {self._fault_detail(kind)}".rstrip())
        lines.append(f"  consumer restarts     {self.restarts:>8,}")
        if self.observed:
            lines.append("ridden out (consumer logs)")
            for what, count in sorted(self.observed.items()):
                lines.append(f"  {what:<21} {count:>8,}")
        lines.append("checked")
        lines.append(
            f"  payments              {c.payments:>8,}  settled {c.states['SETTLED']:,}, "
            f"rejected {c.states['REJECTED']:,}, failed {c.states['FAILED']:,}"
        )
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

    def _fault_detail(self, kind: str) -> str:
        if kind == "crash_point":
            return _kinds(self.crash_points)
        if kind in self.stalls_s:
            return f"{self.stalls_s[kind]:.1f} s in total"
        if kind == "webhook_failure":
            return _kinds(Counter({k: v for k, v in self.webhook_modes.items() if k != "ok"}))
        if kind == "graceful_stop" and self.graceful_exit_s:
            return f"slowest exit {max(self.graceful_exit_s):.1f} s"
        return ""


def _kinds(counts: Counter[str]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items()))
