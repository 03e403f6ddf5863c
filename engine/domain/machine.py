"""The payment state machine, as the first answers and the step catalog make it.

    (new) --validator--> VALIDATED --settlement--> SETTLED --refund--> REFUNDED
      |                    |   \\--settlement--> FAILED        \\--return--> RETURNED
      \\--validator--> REJECTED
                           \\--settlement--> AUTHORIZED --capture--> CAPTURED --refund--> REFUNDED
                                                 |--void--> VOIDED
                                                 \\--expiry--> EXPIRED

Nothing here is written by hand: :data:`ALLOWED` is each first answer's transition and
each step's (its sources to its targets). The ledger's trigger ``payments_state_transition``
(migration 0007) holds a copy; ``tests/integration/test_state_machine_trigger.py`` proves
the two agree.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from types import MappingProxyType

from engine.domain.states import ANSWERS, PaymentState
from engine.domain.steps import STEPS


def _allowed() -> Mapping[PaymentState | None, frozenset[PaymentState]]:
    allowed: defaultdict[PaymentState | None, set[PaymentState]] = defaultdict(set)
    for answer in ANSWERS:
        allowed[answer.source].add(answer.state)
    for spec in STEPS.values():
        for source in spec.sources:
            allowed[source] |= spec.targets
    return MappingProxyType({s: frozenset(t) for s, t in allowed.items()})


ALLOWED = _allowed()  # state (None: a new payment) -> the states it may move to


def reachable(states: frozenset[PaymentState]) -> frozenset[PaymentState]:
    """``states`` and every state the machine may move them to, step after step."""
    seen, todo = set(states), list(states)
    while todo:
        for target in ALLOWED.get(todo.pop(), frozenset()):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return frozenset(seen)
