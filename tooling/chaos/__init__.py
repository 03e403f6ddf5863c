"""Fault injection: proves exactly-once effects under crashes, stalls, outages and poison.

One module per part, read in this order:

- ``workload``   the seeded messages a run publishes (good payments, bad ones, poison,
                 bank retries) and what each must end as;
- ``plan``       the seeded fault schedule (kills, crash points, freezes, outages, SIGTERMs);
- ``faults``     the injectors: broker freeze, database outage (PostgreSQL or SQLite),
                 the flaky webhook endpoint;
- ``wire``       reads every topic back after the run;
- ``invariants`` every property the run must keep, checked from the ledger and the wire;
- ``report``     what happened, ending with ``violations: N``;
- ``harness``    runs it all: broker, fresh database, consumer processes, faults, drain.

``sakk chaos`` (``sakk/cli/chaos.py``) and ``make chaos`` run it; ``docs/chaos.md``
explains what each fault proves.
"""

from __future__ import annotations
