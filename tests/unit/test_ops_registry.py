"""The action registry: every registered request goes to JSON and back unchanged."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from engine.audit.window_settlement import read_answers
from engine.ledger.notifications import NotificationFilter
from engine.ops.keys import RevokeKey
from engine.ops.limits import IssueMovement, SetBankLimit
from engine.ops.notifications import Redeliver
from engine.ops.redrive import RedriveCorrected
from engine.ops.reference import LoadReferenceFile, SetBankDelivery, SetFee, SetLimit
from engine.ops.registry import (
    FOUR_EYES,
    RegistryError,
    from_json,
    needs_four_eyes,
    register,
    registered,
    to_json,
)
from engine.ops.users import (
    ChangeRole,
    CreateUser,
    IssueToken,
    ResetPassword,
    RevokeToken,
    SetDisabled,
)
from engine.ops.windows import AbortWindow, CloseWindow, ConfirmWindow, SettleWindow
from engine.read.positions import Window
from engine.risk.instruction import Parties

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
PARTIES = Parties("999", "BAM", {"007": "BCMAMAMC", "011": "BMCEMAMC"}, "SRBM")
ANSWERS = read_answers([("answer-MAD.xml", b"<not a pacs.002/>")], PARTIES)

EXAMPLES: list[Any] = [
    SetBankLimit("007", "MAD", 5_000_000_00, 80),
    IssueMovement("FundsIn", "011", "MAD", 1_000_000_00, "b0b8a1e0-8d1c-4e5c-9e0b-3b5e2f1c7a10"),
    CloseWindow(Window.containing(T0), early=True, requested_at=T0, by="ops-amal"),
    SettleWindow("2026-12-05", PARTIES, "ops-amal", lambda _i: None),
    ConfirmWindow("2026-12-05", ANSWERS, "ops-amal", PARTIES),
    AbortWindow("2026-12-05", "the settlement bank refused", "ops-amal"),
    RevokeKey("007", "007-2026-11", T0.astimezone(timezone(timedelta(hours=1)))),
    Redeliver(NotificationFilter("FAILED", "007", T0, ()), "ops-amal", 3600, "webhook is back"),
    Redeliver(NotificationFilter(ids=("n-1", "n-2")), "ops-amal", 3600),
    RedriveCorrected(42, b"\x00\x01 corrected \xff", b'{"sig": 1}', forced=True),
    RedriveCorrected(43, b"{}"),
    SetFee(
        "WEB",
        "TRANSFER",
        "MAD",
        {"fixed_minor": 700, "rate_bps": 5, "max_minor": None},
        360,
        30.0,
        T0,
    ),  # fmt: skip
    SetFee("WEB", "TRANSFER", "MAD", None, 360, 30.0),
    SetLimit("ATM", "MAD", {"max_amount_minor": 200_000, "hold_expiry_s": 3600}, 360, 30.0),
    SetBankDelivery("007", {"webhook_url": "https://bank.example/hook"}),
    LoadReferenceFile("reference.yaml", "ab" * 32, {"fee_schedule": [], "banks": [{"code": "7"}]}),
    CreateUser("bank7.ops", "bank", "007", "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA", "amal"),
    ChangeRole("badr", "auditor", None),
    SetDisabled("badr", disabled=False),
    ResetPassword("badr", "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA"),
    IssueToken("bank7.ops", "AbCdEfGh", "ab" * 32, "reconciliation job", "amal", 86_400),
    RevokeToken("AbCdEfGh"),
]


def round_trip(action: Any) -> Any:
    return from_json(json.loads(json.dumps(to_json(action))))


@pytest.mark.parametrize("action", EXAMPLES, ids=lambda a: a.name)
def test_every_registered_request_comes_back_from_json_unchanged(action: Any) -> None:
    again = round_trip(action)
    assert type(again) is type(action) and again == action
    assert to_json(again) == to_json(action)


def test_every_registered_action_has_an_example_here() -> None:
    assert {a.name for a in EXAMPLES} == set(registered())


def test_money_stays_integer_minor_units_and_times_keep_their_offset() -> None:
    cap = to_json(EXAMPLES[0])["request"]
    assert cap["cap_minor"] == 500_000_000 and isinstance(cap["cap_minor"], int)
    revoke = to_json(EXAMPLES[6])
    assert revoke["request"]["revoke_from"] == "2026-12-06T13:00:00+01:00"
    assert round_trip(EXAMPLES[6]).revoke_from == T0


def test_a_confirmation_reads_its_answers_again_from_their_bytes() -> None:
    again = round_trip(EXAMPLES[4])
    assert [(a.name, a.data, a.problem) for a in again.answers] == [
        (a.name, a.data, a.problem) for a in ANSWERS
    ]
    assert again.parties == PARTIES


def test_a_confirmation_without_its_parties_cannot_be_held() -> None:
    with pytest.raises(RegistryError, match="parties"):
        to_json(ConfirmWindow("2026-12-05", ANSWERS, "ops-amal"))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"action": "limits.nope", "request": {}}, "unknown operator action"),
        ({"action": "limits.cap"}, "expected"),
        ({"action": "limits.cap", "request": {"bank": "007"}}, "currency is required"),
        (
            {
                "action": "limits.cap",
                "request": {
                    "bank": "007",
                    "currency": "MAD",
                    "cap_minor": 1.5,
                    "alert_percent": 80,
                },
            },
            "cap_minor: expected int",
        ),  # fmt: skip
        (
            {
                "action": "limits.cap",
                "request": {
                    "bank": "007",
                    "currency": "MAD",
                    "cap_minor": True,
                    "alert_percent": 80,
                },
            },
            "cap_minor: expected int",
        ),  # fmt: skip
        (
            {
                "action": "limits.cap",
                "request": {
                    "bank": "007",
                    "currency": "MAD",
                    "cap_minor": 1,
                    "alert_percent": 80,
                    "extra": 1,
                },
            },
            "unknown fields",
        ),  # fmt: skip
        (
            {
                "action": "key.revoke",
                "request": {"bank": "007", "key_id": "k", "revoke_from": "2026-12-06T12:00:00"},
            },
            "no UTC offset",
        ),  # fmt: skip
        (
            {"action": "dlq.redrive.corrected", "request": {"dead_letter_id": 1, "body": "***"}},
            "not base64",
        ),  # fmt: skip
        (
            {
                "action": "reference.fee",
                "request": {
                    "channel": "WEB",
                    "payment_type": "TRANSFER",
                    "currency": "MAD",
                    "rule": {"fixed_minor": -1, "rate_bps": 0, "max_minor": None},
                    "notice_s": 360,
                    "commit_within_s": 30.0,
                },
            },
            "reference.fee",
        ),  # fmt: skip
    ],
)
def test_json_that_is_not_a_request_of_its_action_is_refused_with_the_reason(
    data: dict[str, Any], message: str
) -> None:
    with pytest.raises(RegistryError, match=message):
        from_json(data)


def test_what_needs_four_eyes() -> None:
    four_eyes = {a.name for a in EXAMPLES if needs_four_eyes(a)}
    assert four_eyes == {
        "limits.cap", "liquidity.movement", "window.settle", "window.confirm",
        "key.revoke", "notifications.redeliver", "dlq.redrive.corrected",
        "user.create", "user.role", "user.disable", "user.password", "user.token.issue",
        "user.token.revoke",
    }  # fmt: skip
    one = Redeliver(NotificationFilter(ids=("n-1",)), "ops-amal", 3600)
    assert not needs_four_eyes(one)  # one notification is not in bulk
    assert not needs_four_eyes(EXAMPLES[5])  # an abort, a close: no money moves
    assert {"user.create", "user.role"} <= FOUR_EYES

    class UserGrant:
        name = "user.grant"

    assert needs_four_eyes(UserGrant())  # every user action, listed or yet to come


def test_a_name_is_registered_by_one_request_type_only() -> None:
    class Impostor:
        name = "limits.cap"

    with pytest.raises(RegistryError, match="already registered"):
        register(Impostor)
    with pytest.raises(RegistryError, match="not a registered"):
        to_json(Impostor())
