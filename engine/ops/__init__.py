"""Operator actions: each a typed request, decided by a pure rule, written with its audit record.

- :mod:`engine.ops.action`: the shape every action has, and the runner.
- :mod:`engine.ops.audit_log`: the append-only, hash-chained log of every action.
- :mod:`engine.ops.reference`: fees, limits and a bank's delivery settings, changed while running.
- :mod:`engine.ops.keys`, :mod:`engine.ops.windows`, :mod:`engine.ops.notifications`,
  :mod:`engine.ops.redrive`: revoke a key, close a settlement window, redeliver
  notifications, redrive a dead letter.
- :mod:`engine.ops.registry`: every request by name, to and from JSON; which need four eyes.
- :mod:`engine.ops.proposals`: four eyes: one operator proposes, another approves;
  :mod:`engine.ops.proposal_check`: what ``sakk audit verify`` checks of it.
"""
