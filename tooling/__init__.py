"""Test tooling, apart from what a bank or an operator runs in production.

- :mod:`tooling.workload.traffic` and :mod:`tooling.reference_data`: simulated banks,
  accounts and traffic (``sakk simulate``, ``sakk demo``).
- :mod:`tooling.bench`: the benchmark (``sakk bench``).
- :mod:`tooling.chaos`: the fault-injection harness (``sakk chaos``).

Only the ``sakk`` commands that run them import from here (``sakk/cli``); nothing a
consumer or a bank's publisher runs does.
"""
