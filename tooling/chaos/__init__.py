"""Fault injection: proves exactly-once effects under crashes, stalls, outages and poison.

One module per part, read in this order:

The seeded messages a run publishes (good payments, bad ones, poison, bank retries, the
lifecycle) and what each must end as are the workload's chaos profile
(``tooling.workload.chaos``); the wait for the run to drain is ``tooling.drain``.

- ``plan``       the seeded fault schedule (kills, crash points, freezes, outages, SIGTERMs);
- ``faults``     the injectors: broker freeze, database outage (PostgreSQL or SQLite),
                 the flaky webhook endpoint;
- ``wire``       reads every topic back after the run;
- ``invariants`` every property the run must keep, checked from the ledger and the wire
                 (what the ledger alone shows by the product's auditor,
                 ``engine.ledger.checks``);
- ``report``     what happened, ending with ``violations: N``;
- ``harness``    runs it all: broker, fresh database, consumer processes, faults, drain.

``sakk chaos`` (``sakk/cli/chaos.py``) and ``make chaos`` run it; ``docs/chaos.md``
explains what each fault proves.
"""

from __future__ import annotations
