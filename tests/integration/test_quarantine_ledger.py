"""The marks of offsets in hand, on both databases: deaths found, counted, and cleared.

No broker and no process is killed here: an instance that "dies" simply never runs the
commit that clears its marks, and the next instance (another owner) polls the same
offsets again, as after a restart or on another host.
"""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from engine.ledger.database import make_engine, upgrade
from engine.ledger.recorder import Recorder
from engine.pipeline.messages import RawMessage
from engine.pipeline.quarantine import MAX_DEATHS, InHandLedger, Unit

pytestmark = pytest.mark.integration

TOPIC = "t.initiated"


@pytest.fixture
def engine(database_url: str):
    upgrade(database_url)
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def polled(*spans: tuple[int, int, int]) -> dict[tuple[str, int], list[RawMessage]]:
    """Partition -> its messages, offsets first..last."""
    return {
        (TOPIC, p): [RawMessage(TOPIC, p, o, b"k", b"v", 0) for o in range(first, last + 1)]
        for p, first, last in spans
    }


def commit(engine: Engine, ledger: InHandLedger, unit: Unit) -> None:
    """What the batch's own transaction does to the marks."""
    with engine.begin() as conn:
        Recorder().record(conn, unit.clears)
    ledger.committed(unit)


def test_a_clean_batch_leaves_nothing_in_hand(engine):
    ledger = InHandLedger("validator", engine, owner="a")
    [unit] = ledger.units(polled((0, 0, 9), (1, 0, 4)))
    assert not unit.alone and len(unit.messages) == 15
    ledger.mark(unit)
    commit(engine, ledger, unit)
    [again] = InHandLedger("validator", engine, owner="b").units(polled((0, 10, 19)))
    assert not again.alone and not again.died


def test_a_death_is_found_by_the_next_instance_and_a_killer_quarantined_after_max_deaths(engine):
    first = InHandLedger("validator", engine, owner="dies")
    [batch] = first.units(polled((0, 0, 9), (1, 0, 4)))
    first.mark(batch)  # ...and the process dies: nothing clears it

    for attempt in range(MAX_DEATHS + 1):  # attempt n: the message alone died n times
        ledger = InHandLedger("validator", engine, owner=f"restart-{attempt}")
        units = ledger.units(polled((0, 0, 9), (1, 0, 4)))
        alone = [u for u in units if u.alone]
        assert len(alone) == 2 and all(len(u.messages) + len(u.poison) == 1 for u in alone)
        unit = next(u for u in alone if u.partitions == {(TOPIC, 0): (0, 0)})
        if unit.poison:
            assert unit.poison[0][1] == MAX_DEATHS == attempt
            break
        ledger.mark(unit)  # offset 0 of partition 0 alone in hand, and it dies again
    else:
        raise AssertionError("never quarantined")
    commit(engine, ledger, unit)  # the poison's dead letter commits with the clear
    # The rest of the range that died still goes one message at a time, with no death.
    [next_one, *_] = InHandLedger("validator", engine, owner="later").units(polled((0, 1, 9)))
    assert next_one.alone and not next_one.died and next_one.messages[0].offset == 1


def test_an_expelled_instance_committing_late_never_clears_its_successors_mark(engine):
    slow = InHandLedger("validator", engine, owner="slow")
    [late] = slow.units(polled((0, 0, 9)))
    slow.mark(late)
    successor = InHandLedger("validator", engine, owner="successor")
    [unit] = successor.units(polled((0, 0, 9)))  # counted as one death: never a poison
    assert unit.alone and unit.died == [(TOPIC, 0)] and not unit.poison
    successor.mark(unit)
    commit(engine, slow, late)  # the slow one's commit lands now: the mark is not its own
    [after] = InHandLedger("validator", engine, owner="third").units(polled((0, 0, 9)))
    assert after.died == [(TOPIC, 0)]  # the successor's mark was still there to be found
