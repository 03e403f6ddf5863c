"""Operator actions' pure rules: reference versions by event time, refusals, the redrive guard."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from engine.config import SettingsError, load_settings
from engine.ledger.exceptions import ReferenceDataError
from engine.ledger.reference import FeeSchedule, Limits
from engine.ledger.reference_versions import (
    FEE,
    LIMIT,
    ReferenceBook,
    ReferenceRefresher,
    Version,
    build_book,
)
from engine.ops.action import Plan, Refused
from engine.ops.audit_log import GENESIS_HASH, ActionRecord, AuditLogError, action_hash
from engine.ops.keys import KeyState, RevokeKey
from engine.ops.redrive import check_redrivable
from engine.ops.reference import ItemState, SetFee, SetLimit, decide_change, effective_time

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
WEB = ("WEB", "TRANSFER", "MAD")
OLD = {"fixed_minor": 500, "rate_bps": 0, "max_minor": None}
NEW = {"fixed_minor": 700, "rate_bps": 0, "max_minor": None}


def version(n: int, item: str, old: dict | None, new: dict | None, at: datetime) -> Version:
    return Version(n, FEE, item, old, new, at - timedelta(minutes=10), at)


def test_a_fee_change_is_in_force_from_its_effective_time_and_not_before() -> None:
    base = FeeSchedule({WEB: (700, 0, None)})  # the table shows the newest announced value
    book = build_book(1, base, Limits(), [version(1, "WEB/TRANSFER/MAD", OLD, NEW, T0)])
    assert book.fees_at(T0 - timedelta(microseconds=1)).rules[WEB] == (500, 0, None)
    assert book.fees_at(T0).rules[WEB] == (700, 0, None)
    assert book.fees_at(T0 + timedelta(days=400)).rules[WEB] == (700, 0, None)


def test_changes_of_one_item_apply_in_turn_and_a_removed_rule_charges_nothing() -> None:
    later = T0 + timedelta(hours=1)
    versions = [
        version(1, "WEB/TRANSFER/MAD", OLD, NEW, T0),
        version(2, "WEB/TRANSFER/MAD", NEW, None, later),
    ]
    book = build_book(2, FeeSchedule({}), Limits(), versions)
    assert book.fees_at(T0 - timedelta(seconds=1)).rules[WEB] == (500, 0, None)
    assert book.fees_at(T0 + timedelta(minutes=1)).rules[WEB] == (700, 0, None)
    assert WEB not in book.fees_at(later).rules


def test_a_limit_change_moves_the_maximum_and_the_hold_expiry() -> None:
    change = Version(
        1, LIMIT, "ATM/MAD", {"max_amount_minor": 500_000, "hold_expiry_s": None},
        {"max_amount_minor": 200_000, "hold_expiry_s": 3600}, T0 - timedelta(hours=1), T0,
    )  # fmt: skip
    book = build_book(1, FeeSchedule(), Limits({("ATM", "MAD"): 200_000}), [change])
    assert book.limits_at(T0 - timedelta(seconds=1)).max_amount_minor[("ATM", "MAD")] == 500_000
    assert ("ATM", "MAD") not in book.limits_at(T0 - timedelta(seconds=1)).hold_expiry_s
    assert book.limits_at(T0).max_amount_minor[("ATM", "MAD")] == 200_000
    assert book.limits_at(T0).hold_expiry_s[("ATM", "MAD")] == 3600


def test_a_change_takes_effect_no_sooner_than_the_notice() -> None:
    assert effective_time(T0, 360, None) == T0 + timedelta(seconds=360)
    assert effective_time(T0, 360, T0 + timedelta(days=1)) == T0 + timedelta(days=1)
    refused = effective_time(T0, 360, T0 + timedelta(seconds=10))
    assert isinstance(refused, Refused) and "at least 360 s" in refused.reason


def test_a_change_that_changes_nothing_or_jumps_a_pending_one_is_refused() -> None:
    pending = ItemState(NEW, T0 + timedelta(hours=2), 4)
    same = decide_change(FEE, "WEB/TRANSFER/MAD", NEW, pending, T0, T0 + timedelta(hours=3))
    assert isinstance(same, Refused) and "nothing changes" in same.reason
    jumping = decide_change(FEE, "WEB/TRANSFER/MAD", OLD, pending, T0, T0 + timedelta(hours=1))
    assert isinstance(jumping, Refused) and "already takes effect" in jumping.reason
    plan = decide_change(FEE, "WEB/TRANSFER/MAD", OLD, pending, T0, T0 + timedelta(hours=2))
    assert isinstance(plan, Plan)
    assert plan.changes.version == 5 and (plan.old, plan.new["value"]) == (NEW, OLD)


def test_a_fee_or_limit_outside_the_rules_of_the_reference_file_is_refused_at_once() -> None:
    with pytest.raises(ReferenceDataError, match="rate_bps"):
        SetFee("WEB", "TRANSFER", "MAD", {"fixed_minor": 0, "rate_bps": 20_000}, 360, 5.0)
    with pytest.raises(ReferenceDataError, match="unknown channel"):
        SetLimit("FAX", "MAD", {"max_amount_minor": 10}, 360, 5.0)


def test_revoking_later_than_the_revocation_in_force_writes_nothing() -> None:
    earlier = T0 - timedelta(days=1)
    plan = RevokeKey("007", "k1", T0).decide(KeyState(True, earlier), T0)
    assert isinstance(plan, Plan) and plan.noop and plan.changes == earlier
    sooner = RevokeKey("007", "k1", earlier - timedelta(days=1)).decide(KeyState(True, earlier), T0)
    assert isinstance(sooner, Plan) and not sooner.noop
    missing = RevokeKey("007", "k9", T0).decide(KeyState(False, None), T0)
    assert isinstance(missing, Refused) and "has no key k9" in missing.reason


@pytest.mark.parametrize("kind", ["poison", "corrupt_batch"])
def test_poison_and_corrupt_batch_dead_letters_are_redriven_only_when_forced(kind: str) -> None:
    refused = check_redrivable("dead letter 3", kind, forced=False)
    assert refused is not None and "--force" in refused.reason and kind in refused.reason
    assert check_redrivable("dead letter 3", kind, forced=True) is None
    assert check_redrivable("dead letter 3", "undecodable", forced=False) is None


def test_the_action_hash_covers_every_field_and_the_link() -> None:
    fields = (GENESIS_HASH, 1, T0, "amal", "reference.fee", "fee WEB/TRANSFER/MAD", '{"a":1}',
              '{"a":2}', "tariff")  # fmt: skip
    base = action_hash(*fields)
    replacements = {0: "1" * 64, 1: 2, 2: T0 + timedelta(microseconds=1)}
    for i in range(len(fields)):
        changed = list(fields)
        changed[i] = replacements.get(i, f"{fields[i]}x")
        assert action_hash(*changed) != base, f"field {i} is not covered"


def test_an_action_names_who_took_it() -> None:
    with pytest.raises(AuditLogError, match="who took it"):
        ActionRecord("  ", T0, "key.revoke", "key 007/k1")


class Clock:
    def __init__(self) -> None:
        self.now = T0.timestamp()

    def __call__(self) -> float:
        return self.now


class FakeConn:
    """Counts the version checks a refresher makes (newest_version's one query)."""

    def __init__(self, version: int = 0) -> None:
        self.version, self.checks = version, 0

    def execute(self, _query: object) -> FakeConn:
        self.checks += 1
        return self

    def scalar_one(self) -> int:
        return self.version


def test_a_refresher_checks_at_most_every_interval_unless_an_event_is_beyond_what_it_knows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reads: list[int] = []

    def read_book(conn: FakeConn) -> ReferenceBook:
        reads.append(conn.version)
        return ReferenceBook(conn.version)

    monkeypatch.setattr("engine.ledger.reference_versions.read_book", read_book)
    clock, conn = Clock(), FakeConn()
    refresher = ReferenceRefresher(refresh_s=5, notice_s=360, clock=clock)
    refresher.current(conn, T0)  # type: ignore[arg-type]
    refresher.current(conn, T0)  # type: ignore[arg-type]
    assert (conn.checks, reads) == (1, [0])  # once within the interval
    conn.version = 1
    clock.now += 5
    assert refresher.current(conn, T0).version == 1  # type: ignore[arg-type]
    assert reads == [0, 1]
    far = datetime.fromtimestamp(clock.now + 356, UTC)  # beyond checked + notice - refresh
    refresher.current(conn, far)  # type: ignore[arg-type]
    assert conn.checks == 3 and reads == [0, 1]  # checked again; unchanged, not read again


def test_a_notice_shorter_than_the_skew_plus_two_refreshes_stops_the_process_at_start() -> None:
    environ = {"SAKK_MAX_EVENT_SKEW_S": "300", "SAKK_REFERENCE_REFRESH_MS": "5000"}
    with pytest.raises(SettingsError, match="SAKK_REFERENCE_NOTICE_S=310 must exceed"):
        load_settings(environ={**environ, "SAKK_REFERENCE_NOTICE_S": "310"})
    assert load_settings(environ={**environ, "SAKK_REFERENCE_NOTICE_S": "311"})
