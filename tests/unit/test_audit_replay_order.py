"""The order hold: validated events released in a ledger's settlement order."""

from __future__ import annotations

from engine.audit.replay import OrderHold
from engine.pipeline.messages import RawMessage


def msg(pid: str) -> RawMessage:
    return RawMessage("t.validated", 0, 0, pid.encode(), pid.encode(), 0)


def released(messages: list[RawMessage]) -> list[str]:
    return [m.key.decode() for m in messages if m.key]


def test_events_wait_for_every_payment_ranked_before_them():
    hold = OrderHold({"a": 0, "b": 1, "c": 2})
    assert released(hold.push("c", msg("c"))) == []
    assert released(hold.push("b", msg("b"))) == []
    assert released(hold.push("a", msg("a"))) == ["a", "b", "c"]


def test_a_payment_the_replay_did_not_validate_no_longer_holds_the_others():
    hold = OrderHold({"a": 0, "b": 1, "c": 2})
    assert released(hold.push("b", msg("b"))) == []
    hold.skip(["a", None, "unknown"])
    assert released(hold.push("c", msg("c"))) == ["b", "c"]


def test_payments_outside_the_order_pass_at_once_and_leftovers_flush_in_order():
    hold = OrderHold({"a": 0, "b": 1, "c": 2})
    assert released(hold.push("x", msg("x"))) == ["x"]
    hold.push("c", msg("c"))
    hold.push("b", msg("b"))
    assert released(hold.flush()) == ["b", "c"]


def test_the_hold_is_bounded():
    hold = OrderHold({str(i): i for i in range(10)}, max_held=3)
    out = []
    for i in range(9, 0, -1):
        out += released(hold.push(str(i), msg(str(i))))
    assert hold.forced == 6 and out == ["6", "5", "4", "3", "2", "1"]  # left early, out of order
    assert released(hold.push("0", msg("0"))) == ["0", "7", "8", "9"]
    assert hold.flush() == []
