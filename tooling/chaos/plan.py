"""The fault schedule of a run: which fault, when, on which consumer, for how long.

Seeded and computed before the run starts, so a failing run replays with the same
schedule. Freezes, outages and graceful stops get non-overlapping slots (each proves
one thing: overlapping them would blur what a failure means); kills land anywhere,
also in the middle of a freeze or an outage. One bank's webhook endpoint is down for
most of the run, whatever else happens meanwhile: it is another party's outage, not
Sakk's, and the point is that the other banks do not feel it.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from engine.pipeline.crash_points import CRASH_POINTS
from sakk.app import TOPOLOGY

KILL = "kill"  # kill -9 at a random moment
CRASH_POINT = "crash_point"  # kill -9 exactly at a step of the consumer loop
MID_BATCH_KILL = "mid_batch_kill"  # kill -9 inside a batch, one of 2+ instances in a group
BROKER_FREEZE = "broker_freeze"  # SIGSTOP the broker, SIGCONT later
DATABASE_OUTAGE = "database_outage"  # no connections to the ledger for a while
GRACEFUL_STOP = "graceful_stop"  # SIGTERM: drain, commit, exit in bounded time, restart
BANK_OUTAGE = "bank_outage"  # one bank's webhook endpoint hangs; the other banks are healthy
FAULT_KINDS = (
    KILL, CRASH_POINT, MID_BATCH_KILL, BROKER_FREEZE, DATABASE_OUTAGE, GRACEFUL_STOP, BANK_OUTAGE,
)  # fmt: skip
EXCLUSIVE = frozenset({BROKER_FREEZE, DATABASE_OUTAGE, GRACEFUL_STOP})

WINDOW_START = 0.05  # fraction of the run: consumers are up, traffic flows
WINDOW_END = 0.85  # leave the tail for the last restarts before the drain
TRAFFIC_END = 0.55  # the harness publishes over the first 60%: crash points need batches
STALL_MIN_S, STALL_MAX_S = 3.0, 8.0  # freezes and outages: several seconds
# The bank outage: from 10% to 80% of the fault window, over most of the traffic
# (published over the first 60%) and of its processing. The harness holds it longer
# while the flow lags behind (BANK_OUTAGE_FLOW_SHARE in tooling.chaos.harness).
BANK_OUTAGE_START, BANK_OUTAGE_END = 0.10, 0.80
MAX_FAULTS = 10_000
# A crash point only fires where its step runs: deliveries happen in the notification stage.
POINT_STAGE = dict.fromkeys(
    ("after_complete", "after_attempt", "after_delivery_record"), TOPOLOGY.notifying.name
)


@dataclass(frozen=True, slots=True)
class Fault:
    at_s: float  # seconds after the fault window opens
    kind: str
    target: str = ""  # consumer label, e.g. "settlement-2"
    point: str = ""  # crash point (CRASH_POINT, MID_BATCH_KILL)
    duration_s: float = 0.0  # BROKER_FREEZE, DATABASE_OUTAGE, BANK_OUTAGE
    bank: str = ""  # BANK_OUTAGE: the bank whose endpoint is down

    def describe(self) -> str:
        detail = {
            KILL: self.target,
            CRASH_POINT: f"{self.target} at {self.point}",
            MID_BATCH_KILL: f"{self.target} at {self.point}",
            GRACEFUL_STOP: self.target,
            BANK_OUTAGE: f"bank {self.bank} for {self.duration_s:.1f} s",
        }.get(self.kind, f"{self.duration_s:.1f} s")
        return f"{self.at_s:7.1f} s  {self.kind:<16} {detail}"


def fault_counts(duration_s: float) -> Counter[str]:
    """How many of each kind a run of ``duration_s`` gets: a few at least, more when longer."""
    return Counter({
        KILL: max(3, int(duration_s / 8)),
        CRASH_POINT: len(CRASH_POINTS) + int(duration_s / 40),
        MID_BATCH_KILL: max(2, int(duration_s / 60)),
        BROKER_FREEZE: max(1, int(duration_s / 45)),
        DATABASE_OUTAGE: max(1, int(duration_s / 45)),
        GRACEFUL_STOP: max(1, int(duration_s / 60)),
        BANK_OUTAGE: 1,  # one long outage, whatever the length: it must outlast the rest
    })  # fmt: skip


def plan_faults(
    seed: int, duration_s: float, members: Sequence[str], banks: Sequence[str]
) -> list[Fault]:
    """The seeded schedule for consumers labelled ``members`` (``<stage>-<n>``).

    ``banks``: the banks the workload notifies (one of them is taken down).
    """
    if duration_s <= 0 or not members or not banks:
        raise ValueError(
            "a fault plan needs a positive duration, at least one consumer and one bank"
        )
    rng = random.Random(f"sakk-chaos-faults/{seed}")
    counts = fault_counts(duration_s)
    if sum(counts.values()) > MAX_FAULTS:
        raise ValueError(f"duration_s={duration_s} would plan more than {MAX_FAULTS} faults")
    lo, hi = duration_s * WINDOW_START, duration_s * WINDOW_END
    busy = duration_s * TRAFFIC_END
    faults = [Fault(rng.uniform(lo, hi), KILL, rng.choice(members)) for _ in range(counts[KILL])]
    points = [CRASH_POINTS[i % len(CRASH_POINTS)] for i in range(counts[CRASH_POINT])]
    for point in points:
        stage = POINT_STAGE.get(point)
        targets = [m for m in members if stage is None or m.startswith(f"{stage}-")] or list(
            members
        )
        faults.append(Fault(rng.uniform(lo, busy), CRASH_POINT, rng.choice(targets), point))
    grouped = [m for m in members if _stage_size(members, m) >= 2] or list(members)
    faults += [
        Fault(rng.uniform(lo, busy), MID_BATCH_KILL, rng.choice(grouped), "before_db_commit")
        for _ in range(counts[MID_BATCH_KILL])
    ]
    faults += _exclusive(rng, counts, members, lo, hi)
    # Drawn last, so adding it left every other fault of a seed where it was.
    faults.append(
        Fault(
            duration_s * BANK_OUTAGE_START,
            BANK_OUTAGE,
            bank=rng.choice(sorted(banks)),
            duration_s=round(duration_s * (BANK_OUTAGE_END - BANK_OUTAGE_START), 2),
        )
    )
    return sorted(faults, key=lambda f: (f.at_s, f.kind, f.target))


def _exclusive(
    rng: random.Random, counts: Counter[str], members: Sequence[str], lo: float, hi: float
) -> list[Fault]:
    kinds = [kind for kind in sorted(EXCLUSIVE) for _ in range(counts[kind])]
    rng.shuffle(kinds)
    slot_s = (hi - lo) / len(kinds)
    faults = []
    for i, kind in enumerate(kinds):
        start = lo + i * slot_s
        if kind == GRACEFUL_STOP:
            faults.append(Fault(rng.uniform(start, start + slot_s / 2), kind, rng.choice(members)))
            continue
        duration = min(rng.uniform(STALL_MIN_S, STALL_MAX_S), slot_s * 0.8)
        faults.append(
            Fault(
                rng.uniform(start, start + slot_s - duration), kind, duration_s=round(duration, 2)
            )
        )
    return faults


def _stage_size(members: Sequence[str], label: str) -> int:
    stage = label.rsplit("-", 1)[0]
    return sum(1 for m in members if m.rsplit("-", 1)[0] == stage)
