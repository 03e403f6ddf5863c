"""The order hold (settlement input released in a ledger's order) and the expiry feed."""

from __future__ import annotations

from engine.audit.replay import Expiry, ExpiryFeed, OrderHold, ReplayPath
from engine.events import derived_event_id
from engine.pipeline.messages import RawMessage
from sakk.app import TOPOLOGY


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


# -- the switch's expiries, merged into settlement's input ---------------------------------


def expiry(pid: str, ms: int, offset: int = 0) -> Expiry:
    message = RawMessage("t.validated", 0, offset, f"x-{pid}".encode(), b"", ms)
    return Expiry(f"expiry-{pid}", pid, message)


def at(pid: str, ms: int) -> RawMessage:
    return RawMessage("t.validated", 0, 0, pid.encode(), pid.encode(), ms)


def test_expiries_go_in_by_record_time_once_their_payment_is_in_the_replay():
    feed = ExpiryFeed([expiry("b", 250), expiry("a", 150)])
    feed.know(["a", "b"])
    merged = feed.merge([at("p1", 100), at("p2", 200), at("p3", 300)])
    assert released(merged) == ["p1", "x-a", "p2", "x-b", "p3"]
    assert feed.rest() == [] and feed.released == 2


def test_an_expiry_waits_for_its_payment_and_one_whose_payment_never_came_is_left_out():
    feed = ExpiryFeed([expiry("a", 100), expiry("ghost", 100, offset=1), expiry("late", 900)])
    assert released(feed.merge([at("p1", 200)])) == ["p1"]  # "a" is not in the replay yet
    feed.know(["a"])
    assert released(feed.merge([at("p2", 300)])) == ["x-a", "p2"]
    feed.know(["late"])
    assert released(feed.rest()) == ["x-late"]  # after the last event; "ghost" never came
    assert feed.released == 2


def test_the_order_is_of_events_so_a_payments_steps_keep_their_own_places():
    validated, step_1, expired, step_2 = "v", "s1", "e", "s2"
    hold = OrderHold({validated: 0, step_1: 1, expired: 2, step_2: 3})
    assert released(hold.push(step_2, msg(step_2))) == []  # a step of the same payment
    assert released(hold.push_all([(expired, msg(expired))])) == []
    assert released(hold.push(validated, msg(validated))) == [validated]
    assert released(hold.push(step_1, msg(step_1))) == [step_1, expired, step_2]


def test_a_forwarded_event_is_ranked_under_the_id_the_validator_gives_it():
    path = ReplayPath.of(TOPOLOGY)
    assert (path.entry, path.settling) == ("validator", "settlement")
    assert path.forwarded_id("PaymentInitiated", "e1") == derived_event_id("e1", "PaymentValidated")
    assert path.forwarded_id("PaymentStepRequested", "e1") == derived_event_id(
        "e1", "PaymentStepValidated"
    )
