"""The traffic simulator and the Moroccan reference data it draws from, without a broker."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from consumers.fees import compute_fee
from consumers.validator import (
    AccountView,
    check_account,
    check_amount,
    check_formats,
    check_parties,
)
from engine.config import PROJECT_ROOT, Settings
from engine.ledger.models import AccountKind, AccountStatus
from engine.ledger.reference import FeeSchedule, Limits, internal_account
from engine.serialization import AvroCodec, DecodeError, SchemaRegistry
from producers.publisher import utc_now_ms
from tests.factories import switch_id
from tooling.reference_data import (
    BANKS,
    build_reference,
    dumps,
    is_valid_rib,
    make_rib,
    rib_key,
)
from tooling.workload.profiles import (
    HOT_MERCHANT,
    HOT_PAYER_BANK,
    LIFECYCLE_MIX,
    MIX,
    MIXES,
    SKEW,
    SKEW_MIX,
    lifecycle_mix,
)
from tooling.workload.traffic import (
    BAD_KINDS,
    EXPECTED,
    EXPIRY_LEAD_S,
    GOOD_KINDS,
    SECURITY_KINDS,
    LiveSimulation,
    SimulatedMessage,
    SimulationReport,
    TokenBucket,
    TrafficSimulator,
    publish_message,
    simulation_signers,
)

START = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
SEED = 11
MESSAGES = 10_000
VIGNETTE_TARIFFS_MINOR = {70_000, 150_000, 300_000, 600_000}
COMMITTED_REFERENCE = PROJECT_ROOT / "reference" / "morocco.json"
EXAMPLES = PROJECT_ROOT / "producers" / "examples" / "payments.jsonl"


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    return build_reference()


@pytest.fixture(scope="module")
def codec() -> AvroCodec:
    return AvroCodec(SchemaRegistry.from_dir(Settings().schemas_dir))


@pytest.fixture(scope="module")
def messages(reference: dict[str, Any], codec: AvroCodec) -> list[SimulatedMessage]:
    return list(TrafficSimulator(reference, SEED, START, codec=codec).generate(MESSAGES))


@pytest.fixture(scope="module")
def views(reference: dict[str, Any]) -> dict[str, AccountView]:
    """Every account the ledger holds after loading ``reference``, as the validator sees it."""
    found = {
        a["number"]: AccountView(a["number"], a["bank"], a["kind"], a["currency"], a["status"])
        for a in reference["accounts"]
    }
    for bank in (b["code"] for b in reference["banks"]):
        for kind in (AccountKind.CASH, AccountKind.FEE_INCOME, AccountKind.SETTLEMENT):
            number = internal_account(bank, kind, "MAD")
            found[number] = AccountView(number, bank, kind.value, "MAD", AccountStatus.ACTIVE)
    return found


@pytest.fixture(scope="module")
def limits(reference: dict[str, Any]) -> Limits:
    return Limits({(x["channel"], x["currency"]): x["max_amount_minor"]
                   for x in reference["channel_limits"]})  # fmt: skip


@pytest.fixture(scope="module")
def schedule(reference: dict[str, Any]) -> FeeSchedule:
    return FeeSchedule({
        (f["channel"], f["payment_type"], f["currency"]): (f["fixed_minor"], f["rate_bps"],
                                                            f["max_minor"])
        for f in reference["fee_schedule"]
    })  # fmt: skip


def payments_of(messages: list[SimulatedMessage], *kinds: str) -> list[dict[str, Any]]:
    return [m.payment for m in messages if m.kind in kinds and m.payment is not None]


def validator_rejection(p: dict[str, Any], views: dict[str, AccountView], limits: Limits) -> Any:
    """The first rule of the validator that refuses ``p`` (duplicates and time aside)."""
    banks = frozenset(v.bank_code for v in views.values())
    payer, payee = views.get(p["payer_account"]), views.get(p["payee_account"])
    return (
        check_formats(p)
        or check_amount(p, limits)
        or check_account("payer", p["payer_bank"], p["payer_account"], payer, banks)
        or check_account("payee", p["payee_bank"], p["payee_account"], payee, banks)
        or check_parties(p, payer, payee)  # type: ignore[arg-type]
    )


# --- the reference data ---------------------------------------------------------------


def test_committed_reference_file_is_what_the_generator_prints() -> None:
    assert COMMITTED_REFERENCE.read_text(encoding="utf-8") == dumps(build_reference())


def test_reference_file_stays_small() -> None:
    assert COMMITTED_REFERENCE.stat().st_size < 200 * 1024


def test_same_seed_gives_the_same_reference_and_another_seed_another() -> None:
    assert build_reference(seed=3) == build_reference(seed=3)
    assert build_reference(seed=3)["accounts"] != build_reference(seed=4)["accounts"]


def test_every_reference_account_is_a_24_digit_rib_with_a_valid_key(reference: dict) -> None:
    numbers = [a["number"] for a in reference["accounts"]]
    assert all(is_valid_rib(n) for n in numbers)
    assert len(set(numbers)) == len(numbers)
    assert all(n[:3] == a["bank"] for n, a in zip(numbers, reference["accounts"], strict=True))


def test_rib_key_makes_the_whole_number_a_multiple_of_97() -> None:
    number = make_rib("007", "780", "0000001234567890")
    assert number == "007780000000123456789057"  # 97 - (7780000000123456789000 mod 97) = 57
    assert int(number) % 97 == 0
    assert rib_key("190", "810", "0000000000000000") == f"{97 - 190810 * 10**18 % 97:02d}"


def test_a_mistyped_rib_digit_fails_the_key_check() -> None:
    number = make_rib("011", "450", "1234567812345678")
    mistyped = number[:10] + str((int(number[10]) + 1) % 10) + number[11:]
    assert is_valid_rib(number) and not is_valid_rib(mistyped)


def test_reference_has_the_banks_with_their_codes_and_bics(reference: dict) -> None:
    banks = {b["code"]: b for b in reference["banks"]}
    assert banks["007"]["bic"] == "BCMAMAMC" and banks["225"]["bic"] == "CNCAMAMR"
    assert banks["310"]["name"] == "Trésorerie Générale du Royaume"
    assert len(banks) == len(BANKS) == 9


def test_each_bank_has_two_closed_and_one_blocked_customer(reference: dict) -> None:
    customers = [a for a in reference["accounts"] if a["kind"] == "CUSTOMER"]
    per_bank = Counter((a["bank"], a["status"]) for a in customers)
    for code in {a["bank"] for a in customers}:
        assert per_bank[(code, "CLOSED")] == 2
        assert per_bank[(code, "BLOCKED")] == 1
        assert per_bank[(code, "ACTIVE")] == 57


def test_customer_opening_balances_are_200_to_80000_mad(reference: dict) -> None:
    customers = [a for a in reference["accounts"] if a["kind"] == "CUSTOMER"]
    openings = [a["opening_balance_minor"] for a in customers]
    assert min(openings) >= 20_000 and max(openings) <= 8_000_000
    assert all(isinstance(o, int) for o in openings)
    assert 0 < sum(1 for a in customers if a["overdraft_limit_minor"]) < len(customers) // 5


def test_merchants_and_government_accounts_sit_at_their_banks(reference: dict) -> None:
    others = {a["holder"]: a for a in reference["accounts"] if a["kind"] != "CUSTOMER"}
    ram = others["Royal Air Maroc"]
    assert (ram["bank"], ram["merchant_category_code"]) == ("007", "4511")
    assert others["Air Arabia Maroc"]["bank"] == "011"
    assert others["Jumia Maroc"]["merchant_category_code"] == "5311"
    vignette = others["DGI — Vignette automobile"]
    assert (vignette["bank"], vignette["kind"], vignette["egov_service"]) == \
        ("310", "GOVERNMENT", "VIGNETTE")  # fmt: skip
    assert others["DGI — Impôts"]["kind"] == "GOVERNMENT"


def test_fee_schedule_and_limits_are_the_stated_ones(reference: dict) -> None:
    fees = {(f["channel"], f["payment_type"]): (f["fixed_minor"], f["rate_bps"], f["max_minor"])
            for f in reference["fee_schedule"]}  # fmt: skip
    assert fees[("BRANCH", "TRANSFER")] == (1_000, 10, 5_000)
    assert fees[("EGOV", "EGOV")] == (0, 100, 5_000)
    assert fees[("ATM", "CASH_WITHDRAWAL")] == (600, 0, None)
    limits = {x["channel"]: x["max_amount_minor"] for x in reference["channel_limits"]}
    assert limits == {"WEB": 5_000_000, "MOBILE": 2_000_000, "ATM": 500_000, "POS": 2_000_000,
                      "BRANCH": 100_000_000, "EGOV": 10_000_000}  # fmt: skip


def test_reference_loads_into_a_ledger_twice_without_change(tmp_path: Path) -> None:
    from engine.ledger.database import make_engine, upgrade
    from engine.ledger.reference import load_reference_data

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    upgrade(url)
    engine = make_engine(url)
    data = json.loads(COMMITTED_REFERENCE.read_text(encoding="utf-8"))
    first = load_reference_data(engine, data)
    again = load_reference_data(engine, data)
    engine.dispose()
    assert (first.banks, first.fee_rules, first.channel_limits) == (9, 9, 6)
    internal_per_bank = 5  # cash, fee income, settlement, funding, liquidity
    assert first.accounts_created == len(data["accounts"]) + 9 * internal_per_bank
    assert again.accounts_created == 0


# --- determinism and the mix ----------------------------------------------------------


def test_same_seed_gives_the_same_messages(reference: dict, codec: AvroCodec) -> None:
    one = list(TrafficSimulator(reference, 5, START, codec=codec).generate(800))
    two = list(TrafficSimulator(reference, 5, START, codec=codec).generate(800))
    assert one == two


def test_another_seed_gives_other_messages(reference: dict) -> None:
    one = list(TrafficSimulator(reference, 5, START).generate(50))
    two = list(TrafficSimulator(reference, 6, START).generate(50))
    assert [m.payment for m in one] != [m.payment for m in two]


def test_successive_generate_calls_continue_one_stream(reference: dict) -> None:
    whole = list(TrafficSimulator(reference, 5, START).generate(300))
    sim = TrafficSimulator(reference, 5, START)
    assert list(sim.generate(100)) + list(sim.generate(200)) == whole


def test_mix_over_10000_messages_is_close_to_the_stated_shares(
    messages: list[SimulatedMessage],
) -> None:
    percent = {k: 100 * v / len(messages) for k, v in Counter(m.kind for m in messages).items()}
    groups = {
        "e-commerce": (("ecommerce_airline", "ecommerce"), 22),
        "vignette": (("vignette",), 10),
        "other e-government": (("egov_tax",), 4),
        "ATM": (("atm_withdrawal",), 15),
        "POS": (("pos_card",), 20),
        "mobile transfers": (("mobile_transfer",), 12),
        "web and branch transfers": (("interbank_transfer", "branch_transfer"), 10),
        "bad cases": (tuple(BAD_KINDS), 7),
    }
    for name, (kinds, share) in groups.items():
        measured = sum(percent.get(k, 0) for k in kinds)
        assert abs(measured - share) <= max(1.0, share * 0.1), f"{name}: {measured:.1f}%"
    assert set(percent) == set(MIX)
    assert percent["ecommerce_airline"] >= 7  # airlines among the largest merchants


def test_every_good_payment_passes_the_validator_rules(
    messages: list[SimulatedMessage], views: dict[str, AccountView], limits: Limits
) -> None:
    good = payments_of(messages, *GOOD_KINDS)
    assert len(good) > 9_000
    refused = [(p["bank_reference"], validator_rejection(p, views, limits)) for p in good]
    assert [r for r in refused if r[1] is not None] == []


@pytest.mark.parametrize(
    ("kind", "reason"),
    [("unknown_account", "AC01"), ("closed_account", "AC04"), ("over_limit", "AM02")],
)
def test_each_bad_payment_breaks_the_rule_its_kind_names(
    kind: str, reason: str, messages: list[SimulatedMessage],
    views: dict[str, AccountView], limits: Limits,
) -> None:  # fmt: skip
    bad = payments_of(messages, kind)
    assert bad
    reasons = {validator_rejection(p, views, limits).reason.value for p in bad}
    assert reasons == {reason}
    assert {m.expected_reason for m in messages if m.kind == kind} == {reason}


def test_good_payments_never_overdraw_a_payer_and_insufficient_ones_always_do(
    messages: list[SimulatedMessage], reference: dict, schedule: FeeSchedule
) -> None:
    """Replayed in order, as settlement sees one payer's payments (one partition)."""
    balance = {a["number"]: a["opening_balance_minor"] for a in reference["accounts"]}
    overdraft = {a["number"]: a["overdraft_limit_minor"] for a in reference["accounts"]}
    short = []
    for m in messages:
        p = m.payment
        if p is None or m.kind not in GOOD_KINDS | {"insufficient_funds"}:
            continue
        fee = compute_fee(schedule, p["channel"], p["payment_type"], p["currency"],
                          p["amount_minor"], p["egov_service"])  # fmt: skip
        payer = p["payer_account"]
        can_pay = balance[payer] + overdraft[payer] >= p["amount_minor"] + fee
        if m.kind == "insufficient_funds":
            assert not can_pay, p["bank_reference"]
            continue
        if not can_pay:
            short.append(p["bank_reference"])
        balance[p["payer_account"]] -= p["amount_minor"] + fee
        if p["payee_account"] in balance:
            balance[p["payee_account"]] += p["amount_minor"]
    assert short == []
    assert sum(1 for m in messages if m.kind == "insufficient_funds") > 50


def test_vignette_is_paid_to_the_dgi_as_egov_and_never_carries_a_fee(
    messages: list[SimulatedMessage], reference: dict, schedule: FeeSchedule
) -> None:
    dgi = next(a["number"] for a in reference["accounts"] if a.get("egov_service") == "VIGNETTE")
    vignettes = payments_of(messages, "vignette")
    assert len(vignettes) > 800
    for p in vignettes:
        assert p["payee_account"] == dgi
        assert (p["payment_type"], p["egov_service"]) == ("EGOV", "VIGNETTE")
        assert p["amount_minor"] in VIGNETTE_TARIFFS_MINOR
        fee = compute_fee(schedule, p["channel"], p["payment_type"], p["currency"],
                          p["amount_minor"], p["egov_service"])  # fmt: skip
        assert fee == 0
    assert {p["channel"] for p in vignettes} == {"EGOV", "WEB", "MOBILE"}
    # The exemption is by code, not by luck: the same payment as a tax would pay a fee.
    assert compute_fee(schedule, "EGOV", "EGOV", "MAD", 70_000, "IMPOTS") > 0


def test_atm_withdrawals_are_whole_hundreds_often_at_another_banks_atm(
    messages: list[SimulatedMessage],
) -> None:
    withdrawals = payments_of(messages, "atm_withdrawal")
    for p in withdrawals:
        assert p["amount_minor"] % 10_000 == 0 and 10_000 <= p["amount_minor"] <= 200_000
        assert p["payee_account"] == f"{p['payee_bank']}-CASH-MAD"
    elsewhere = sum(1 for p in withdrawals if p["payee_bank"] != p["payer_bank"])
    assert 0.25 < elsewhere / len(withdrawals) < 0.45


def test_airlines_are_paid_online_with_their_mcc(messages: list[SimulatedMessage]) -> None:
    flights = payments_of(messages, "ecommerce_airline")
    assert {p["merchant_category_code"] for p in flights} == {"4511"}
    assert {p["channel"] for p in flights} == {"WEB", "MOBILE"}
    assert {p["payee_bank"] for p in flights} == {"007", "011"}


def test_duplicate_retry_reuses_an_earlier_reference_of_the_same_bank_with_new_ids(
    messages: list[SimulatedMessage],
) -> None:
    earlier: dict[tuple[str, str], dict[str, Any]] = {}
    retries = 0
    for m in messages:
        p = m.payment
        if p is None:
            continue
        key = (p["payer_bank"], p["bank_reference"])
        if m.kind == "duplicate_retry":
            original = earlier[key]
            assert p["payment_id"] != original["payment_id"]
            assert p["event_id"] != original["event_id"]
            assert p["payer_account"] == original["payer_account"]
            assert p["amount_minor"] == original["amount_minor"]
            retries += 1
        else:
            assert key not in earlier, f"reference reused outside a retry: {key}"
            earlier[key] = p
    assert retries > 50


def test_bank_references_fit_35_characters_and_ids_are_unique(
    messages: list[SimulatedMessage],
) -> None:
    payments = [m.payment for m in messages if m.payment is not None]
    assert max(len(p["bank_reference"]) for p in payments) <= 35
    assert len({p["event_id"] for p in payments}) == len(payments)
    assert len({p["payment_id"] for p in payments}) == len(payments)


def test_every_payment_fits_the_schema(messages: list[SimulatedMessage], codec: AvroCodec) -> None:
    for m in messages:
        if m.payment is not None:
            codec.encode("PaymentInitiated", m.payment, validate=True)


def test_malformed_messages_never_decode_and_some_are_truncated_payments(
    messages: list[SimulatedMessage], codec: AvroCodec
) -> None:
    malformed = [m for m in messages if m.kind == "malformed"]
    assert malformed and all(m.payment is None and m.raw for m in malformed)
    for m in malformed:
        with pytest.raises(DecodeError):
            codec.decode(m.raw)
    truncated = [m for m in malformed if m.raw[:2] == b"\xc3\x01"]  # type: ignore[index]
    assert 0 < len(truncated) < len(malformed)
    assert all(m.expected_outcome == "dead_lettered" for m in malformed)


def test_without_a_codec_malformed_messages_are_random_bytes(reference: dict) -> None:
    malformed = [m for m in TrafficSimulator(reference, SEED, START).generate(3_000)
                 if m.kind == "malformed"]  # fmt: skip
    assert malformed and all(m.raw and m.raw[:2] != b"\xc3\x01" for m in malformed)


# --- signatures -------------------------------------------------------------------------


def test_every_payment_and_every_malformed_message_is_signed_by_its_payers_bank(
    messages: list[SimulatedMessage],
) -> None:
    honest = [m for m in messages if m.kind not in SECURITY_KINDS]
    for m in honest:
        if m.payment is not None:
            assert m.signer == m.payment["payer_bank"], m.kind
    malformed = [m for m in honest if m.kind == "malformed"]
    banks = {a[:3] for a in (m.key.decode() for m in malformed if m.key)}  # a RIB starts so
    assert malformed and {m.signer for m in malformed} <= banks
    assert {m.expected_outcome for m in malformed} == {"dead_lettered"}  # poison stays poison
    assert {m.expected_reason for m in malformed} == {None}


def test_forgeries_are_signed_by_another_bank_or_none_and_must_be_refused_for_security(
    messages: list[SimulatedMessage], reference: dict
) -> None:
    banks = {b["code"] for b in reference["banks"]}
    forged = [m for m in messages if m.kind == "forged_payer_bank"]
    unsigned = [m for m in messages if m.kind == "unsigned_payment"]
    assert len(forged) > 10 and len(unsigned) > 5
    for m in forged:
        assert m.payment is not None and m.raw is None
        assert m.signer in banks and m.signer != m.payment["payer_bank"]
        assert m.payment["payee_bank"] == m.signer  # bank A moving a bank B customer's money
    assert all(m.signer is None and m.payment is not None for m in unsigned)
    for m in forged + unsigned:
        assert (m.expected_outcome, m.expected_reason) == ("dead_lettered", "security")


def test_simulated_banks_get_one_reproducible_key_each_per_seed(reference: dict) -> None:
    one, again, other = (simulation_signers(reference, seed) for seed in (1, 1, 2))
    assert one.banks == {b["code"] for b in reference["banks"]}
    assert [e.key_id for e in one.key_entries(START)] == [
        e.key_id for e in again.key_entries(START)
    ]
    assert {e.key_id for e in one.key_entries(START)}.isdisjoint(
        e.key_id for e in other.key_entries(START)
    )


class RecordingPublisher:
    """Stands for PaymentPublisher: records how each message would be sent."""

    def __init__(self, codec: AvroCodec) -> None:
        self.codec = codec
        self.sent: list[tuple[str, Any, bytes | None, str | None]] = []

    def encode(self, payment: dict[str, Any]) -> bytes:
        return self.codec.encode("PaymentInitiated", payment, validate=True)

    def publish(self, payment: dict[str, Any]) -> None:
        self.sent.append(("payment", payment["payment_id"], None, payment["payer_bank"]))

    def publish_raw(self, value: bytes, key: bytes | None = None, signer: str | None = None):  # type: ignore[no-untyped-def]
        self.sent.append(("raw", value, key, signer))


def test_publish_message_sends_a_forgery_as_raw_bytes_signed_by_the_forger_or_nobody(
    messages: list[SimulatedMessage], codec: AvroCodec
) -> None:
    forged = next(m for m in messages if m.kind == "forged_payer_bank")
    unsigned = next(m for m in messages if m.kind == "unsigned_payment")
    good = next(m for m in messages if m.kind == "vignette")
    malformed = next(m for m in messages if m.kind == "malformed")
    publisher = RecordingPublisher(codec)
    for m in (forged, unsigned, good, malformed):
        publish_message(publisher, m)  # type: ignore[arg-type]
    assert [(kind, signer) for kind, _, _, signer in publisher.sent] == [
        ("raw", forged.signer), ("raw", None), ("payment", good.signer),
        ("raw", malformed.signer),
    ]  # fmt: skip
    decoded = codec.decode(publisher.sent[0][1]).record
    assert {k: v for k, v in decoded.items() if k not in forged.payment} == dict.fromkeys(
        set(decoded) - set(forged.payment)
    )  # optional fields the simulator leaves out decode as their default
    assert {k: decoded[k] for k in forged.payment} == forged.payment
    assert publisher.sent[0][2] == forged.payment["payer_account"].encode()  # type: ignore[index]
    assert publisher.sent[3][1:3] == (malformed.raw, malformed.key)


def test_report_counts_signed_and_forged_messages(messages: list[SimulatedMessage]) -> None:
    report = SimulationReport(SEED, None)
    for m in messages:
        report.count(m)
    assert report.forged == sum(1 for m in messages if m.kind in SECURITY_KINDS)
    assert report.signed == sum(1 for m in messages if m.kind != "unsigned_payment")
    assert f"{report.forged:,} forged" in report.summary()


# --- time -------------------------------------------------------------------------------


def test_occurred_at_advances_from_start_a_few_milliseconds_per_message(
    messages: list[SimulatedMessage],
) -> None:
    times = [m.payment["occurred_at"] for m in messages if m.payment is not None]
    assert times[0] > START
    steps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert all(timedelta(0) < s <= timedelta(milliseconds=9 * 30) for s in steps)
    assert times[-1] - START < timedelta(seconds=MESSAGES * 9 / 1000)
    assert all(t.tzinfo is not None and t.microsecond % 1000 == 0 for t in times)


def test_live_mode_stamps_each_payment_with_the_time_it_is_generated(reference: dict) -> None:
    before = utc_now_ms()
    live = [m.payment for m in TrafficSimulator(reference, SEED, START, live=True).generate(200)]
    after = utc_now_ms()
    assert all(before <= p["occurred_at"] <= after for p in live if p is not None)


def test_run_tag_changes_ids_and_references_but_not_the_traffic(reference: dict) -> None:
    plain = list(TrafficSimulator(reference, SEED, START).generate(300))
    tagged = list(TrafficSimulator(reference, SEED, START, run_tag="r1").generate(300))
    assert [m.kind for m in plain] == [m.kind for m in tagged]
    pairs = [(a.payment, b.payment) for a, b in zip(plain, tagged, strict=True) if a.payment]
    assert all(a["amount_minor"] == b["amount_minor"] for a, b in pairs)  # type: ignore[index]
    assert all(a["payment_id"] != b["payment_id"] for a, b in pairs)  # type: ignore[index]
    assert all("-r1-" in b["bank_reference"] for _, b in pairs)  # type: ignore[index]


def test_simulator_refuses_a_naive_start(reference: dict) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        TrafficSimulator(reference, SEED, datetime(2026, 1, 1))


# --- the skew profile (hot accounts) ----------------------------------------------------

SKEW_MESSAGES = 5_000
SKEW_CUSTOMERS_PER_BANK = 400  # 3,500 hot purchases from one bank: enough payers to fund them


@pytest.fixture(scope="module")
def skew_reference() -> dict[str, Any]:
    return build_reference(customers_per_bank=SKEW_CUSTOMERS_PER_BANK)


@pytest.fixture(scope="module")
def skewed(skew_reference: dict[str, Any], codec: AvroCodec) -> list[SimulatedMessage]:
    sim = TrafficSimulator(skew_reference, SEED, START, codec=codec, profile=SKEW)
    return list(sim.generate(SKEW_MESSAGES))


def account_of(reference: dict[str, Any], **match: str) -> str:
    return next(
        a["number"] for a in reference["accounts"]
        if all(a.get(k) == v for k, v in match.items())
    )  # fmt: skip


def test_skew_weights_are_70_percent_hot_and_the_uniform_mix_for_the_rest() -> None:
    assert sum(SKEW_MIX.values()) == 10_000
    assert SKEW_MIX["hot_merchant"] == 7_000
    assert "egov_tax" not in SKEW_MIX
    assert SKEW_MIX["vignette"] == 3 * (MIX["vignette"] + MIX["egov_tax"])
    assert all(SKEW_MIX[k] == 3 * w for k, w in MIX.items() if k not in ("vignette", "egov_tax"))
    assert set(MIXES) == {"uniform", "skew"} and MIXES["uniform"] is MIX
    assert EXPECTED["hot_merchant"] == ("settled", None) and "hot_merchant" in GOOD_KINDS


def test_skew_is_deterministic_for_a_seed_and_differs_from_uniform(
    skew_reference: dict, codec: AvroCodec
) -> None:
    def stream(seed: int, profile: str) -> list[SimulatedMessage]:
        return list(TrafficSimulator(skew_reference, seed, START, codec=codec,
                                     profile=profile).generate(500))  # fmt: skip

    assert stream(5, SKEW) == stream(5, SKEW)
    assert stream(5, SKEW) != stream(6, SKEW)
    assert stream(5, SKEW) != stream(5, "uniform")


def test_default_profile_is_the_uniform_mix(reference: dict) -> None:
    default = list(TrafficSimulator(reference, 5, START).generate(300))
    assert list(TrafficSimulator(reference, 5, START, profile="uniform").generate(300)) == default
    assert "hot_merchant" not in {m.kind for m in default}


def test_skew_sends_70_percent_from_one_banks_customers_to_one_merchant_account(
    skewed: list[SimulatedMessage], skew_reference: dict
) -> None:
    merchant = account_of(skew_reference, holder=HOT_MERCHANT, kind="MERCHANT")
    hot = payments_of(skewed, "hot_merchant")
    assert 0.68 <= len(hot) / len(skewed) <= 0.72
    assert {p["payer_bank"] for p in hot} == {HOT_PAYER_BANK}
    assert {p["payee_account"] for p in hot} == {merchant}
    assert {p["payment_type"] for p in hot} == {"PURCHASE"}
    assert len({p["payer_account"] for p in hot}) > 100  # many payers, one payee
    to_merchant = [m for m in skewed if m.payment and m.payment["payee_account"] == merchant]
    assert len(to_merchant) >= len(hot)  # the rest of the mix may buy there too


def test_skew_pays_every_egov_payment_to_the_vignette_account_free_of_charge(
    skewed: list[SimulatedMessage], skew_reference: dict, schedule: FeeSchedule
) -> None:
    vignette = account_of(skew_reference, egov_service="VIGNETTE")
    egov = [m.payment for m in skewed if m.payment and m.payment["payment_type"] == "EGOV"]
    assert len(egov) > 100
    assert {p["payee_account"] for p in egov} == {vignette}
    assert {p["egov_service"] for p in egov} == {"VIGNETTE"}
    assert "egov_tax" not in {m.kind for m in skewed}
    fees = {compute_fee(schedule, p["channel"], "EGOV", "MAD", p["amount_minor"], "VIGNETTE")
            for p in egov}  # fmt: skip
    assert fees == {0}


def test_skew_good_payments_pass_the_validator_and_never_overdraw_a_payer(
    skewed: list[SimulatedMessage], skew_reference: dict, schedule: FeeSchedule
) -> None:
    views = {a["number"]: AccountView(a["number"], a["bank"], a["kind"], a["currency"],
                                      a["status"]) for a in skew_reference["accounts"]}  # fmt: skip
    limits = Limits({(x["channel"], x["currency"]): x["max_amount_minor"]
                     for x in skew_reference["channel_limits"]})  # fmt: skip
    balance = {a["number"]: a["opening_balance_minor"] + a["overdraft_limit_minor"]
               for a in skew_reference["accounts"]}  # fmt: skip
    for m in skewed:
        p = m.payment
        if p is None or m.kind not in GOOD_KINDS:
            continue
        if m.kind == "hot_merchant":
            assert validator_rejection(p, views, limits) is None, p["bank_reference"]
        fee = compute_fee(schedule, p["channel"], p["payment_type"], p["currency"],
                          p["amount_minor"], p["egov_service"])  # fmt: skip
        balance[p["payer_account"]] -= p["amount_minor"] + fee
        assert balance[p["payer_account"]] >= 0, p["bank_reference"]
        if p["payee_account"] in balance:
            balance[p["payee_account"]] += p["amount_minor"]


def test_skew_needs_customers_at_the_hot_payer_bank(reference: dict) -> None:
    without = dict(reference, accounts=[a for a in reference["accounts"]
                                        if not (a["bank"] == HOT_PAYER_BANK
                                                and a["kind"] == "CUSTOMER")])  # fmt: skip
    with pytest.raises(ValueError, match=f"bank {HOT_PAYER_BANK}"):
        TrafficSimulator(without, SEED, START, profile=SKEW)
    TrafficSimulator(without, SEED, START)  # the uniform mix does without them


def test_simulator_and_live_simulation_refuse_an_unknown_profile(reference: dict) -> None:
    with pytest.raises(ValueError, match="profile"):
        TrafficSimulator(reference, SEED, START, profile="bursty")
    with pytest.raises(ValueError, match="profile"):
        LiveSimulation(Settings(kafka_bootstrap_servers="127.0.0.1:1"), profile="bursty")


def test_live_simulation_publishes_only_inside_its_block() -> None:
    simulation = LiveSimulation(Settings(kafka_bootstrap_servers="127.0.0.1:1"))
    with pytest.raises(RuntimeError, match="with LiveSimulation"):
        simulation.publish(10)


# --- pacing -----------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept += seconds
        self.now += seconds


def test_token_bucket_paces_to_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(200, clock=clock, sleep=clock.sleep)
    for _ in range(1_000):
        bucket.take()
    assert clock.now == pytest.approx(1_000 / 200, rel=0.02)


def test_token_bucket_allows_only_a_short_burst_after_idling() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1_000, clock=clock, sleep=clock.sleep)
    clock.now = 60.0  # a minute idle must not bank a minute of tokens
    for _ in range(bucket.burst + 100):
        bucket.take()
    assert clock.slept == pytest.approx(100 / 1_000, rel=0.05)


def test_token_bucket_refuses_a_rate_beyond_its_maximum() -> None:
    with pytest.raises(ValueError):
        TokenBucket(0)


# --- the example file ---------------------------------------------------------------


def test_example_file_payments_pass_the_validator_rules(
    views: dict[str, AccountView], limits: Limits
) -> None:
    from producers.jsonl import parse_line

    lines = [line for line in EXAMPLES.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(lines) >= 10
    for line in lines:
        p = parse_line(line)
        assert validator_rejection(p, views, limits) is None, p["bank_reference"]


def test_live_good_payments_are_covered_without_credits_not_yet_a_minute_old(
    reference: dict, schedule: FeeSchedule
) -> None:
    """Live, a credit may settle after the payee's next debit: only older credits are spent."""
    balance = {a["number"]: a["opening_balance_minor"] + a["overdraft_limit_minor"]
               for a in reference["accounts"]}  # fmt: skip
    sim = TrafficSimulator(reference, SEED, START, live=True)  # a run far shorter than a minute
    for m in sim.generate(5_000):
        p = m.payment
        if p is None or m.kind not in GOOD_KINDS:
            continue
        fee = compute_fee(schedule, p["channel"], p["payment_type"], p["currency"],
                          p["amount_minor"], p["egov_service"])  # fmt: skip
        balance[p["payer_account"]] -= p["amount_minor"] + fee  # credits never counted
        assert balance[p["payer_account"]] >= 0, p["bank_reference"]


def test_sakk_simulate_offers_every_traffic_profile() -> None:
    from sakk.cli.simulate import simulate as command
    from tooling.workload.profiles import MIXES

    (option,) = [p for p in command.params if p.name == "profile"]
    assert set(option.type.choices) == set(MIXES)  # type: ignore[attr-defined]


# --- the lifecycle traffic (lifecycle=True) ---------------------------------------------

LIFECYCLE_MESSAGES = 6_000


@pytest.fixture(scope="module")
def lifecycle(reference: dict[str, Any], codec: AvroCodec) -> list[SimulatedMessage]:
    sim = TrafficSimulator(reference, SEED, START, codec=codec, lifecycle=True)
    return list(sim.generate(LIFECYCLE_MESSAGES))


def steps_of(messages: list[SimulatedMessage]) -> list[SimulatedMessage]:
    return [m for m in messages if m.step is not None]


def test_lifecycle_traffic_is_the_same_for_a_seed_and_off_by_default(
    reference: dict, lifecycle: list[SimulatedMessage], codec: AvroCodec
) -> None:
    again = list(TrafficSimulator(reference, SEED, START, codec=codec, lifecycle=True)
                 .generate(LIFECYCLE_MESSAGES))  # fmt: skip
    assert again == lifecycle
    plain = list(TrafficSimulator(reference, SEED, START).generate(2_000))
    assert not steps_of(plain) and not set(LIFECYCLE_MIX) & {m.kind for m in plain}


def test_lifecycle_traffic_has_every_kind_and_the_mix_keeps_its_total() -> None:
    mixed = lifecycle_mix(MIX)
    assert sum(mixed.values()) == sum(MIX.values())
    assert set(mixed) == set(MIX) | set(LIFECYCLE_MIX)
    assert all(weight >= 0 for weight in mixed.values())


def test_lifecycle_traffic_holds_cards_refunds_returns_and_a_few_expiries(
    lifecycle: list[SimulatedMessage],
) -> None:
    kinds = Counter(m.kind for m in lifecycle)
    assert set(LIFECYCLE_MIX) <= set(kinds)
    assert 0 < kinds["card_expiry"] < 20  # a few
    holds = [m.payment for m in lifecycle if m.payment and m.payment["intent"] == "AUTHORIZATION"]
    assert {p["channel"] for p in holds} == {"POS", "WEB"}
    assert all(p["payment_type"] == "PURCHASE" for p in holds)
    refunded = {switch_id(m.step) for m in steps_of(lifecycle) if m.step["step"] == "REFUND"}
    airline = {switch_id(m.payment): m.payment for m in lifecycle
               if m.payment and switch_id(m.payment) in refunded}  # fmt: skip
    assert {p["merchant_category_code"] for p in airline.values()} == {"4511"}
    returns = [m.step for m in steps_of(lifecycle) if m.step["step"] == "RETURN"]
    assert returns and {s["reason_code"] for s in returns} <= {"AC04", "AC01", "AC06", "MD07"}


def test_each_step_follows_its_payment_at_once_and_is_signed_by_its_sender_bank(
    lifecycle: list[SimulatedMessage], codec: AvroCodec
) -> None:
    payments = {switch_id(m.payment): (i, m.payment) for i, m in enumerate(lifecycle)
                if m.payment}  # fmt: skip
    last: dict[str, int] = {}
    for i, m in enumerate(lifecycle):
        if m.step is None:
            continue
        s = m.step
        at, p = payments[switch_id(s)]  # its payer's bank's own id, or the switch's
        assert i - last.get(switch_id(s), at) == 1  # right behind the payment or its step
        last[switch_id(s)] = i
        assert m.signer == s["sender_bank"] and m.payment is None and m.raw is None
        assert s["payer_account"] == p["payer_account"]  # its key: the payment's partition
        if s["step"] in ("REFUND", "RETURN") and m.expected_outcome == "applied":
            assert s["sender_bank"] == p["payee_bank"]
        elif s["step"] in ("CAPTURE", "VOID"):
            assert s["sender_bank"] in (p["payer_bank"], p["payee_bank"])
        codec.encode("PaymentStepRequested", s, validate=True)
    misdirected = [m for m in steps_of(lifecycle) if m.kind == "refund_by_payer_bank"]
    assert misdirected
    for m in misdirected:
        p = payments[switch_id(m.step)][1]
        assert m.signer == p["payer_bank"] != p["payee_bank"]  # signed, but not a party to it


def test_references_of_steps_are_their_senders_own_and_never_repeat(
    lifecycle: list[SimulatedMessage],
) -> None:
    taken: set[tuple[str, str]] = set()
    for m in lifecycle:
        if m.kind == "duplicate_retry" or not (m.payment or m.step):
            continue
        record = m.step or m.payment
        assert record is not None
        bank = record["sender_bank"] if m.step else record["payer_bank"]
        key = (bank, record["bank_reference"])
        assert key not in taken and len(key[1]) <= 35
        taken.add(key)


def test_a_generate_call_never_cuts_a_payment_from_its_steps(reference: dict) -> None:
    sim = TrafficSimulator(reference, SEED, START, lifecycle=True)
    for n in (1, 2, 3, 50, 333):
        batch = list(sim.generate(n))
        assert len(batch) == n
        named = {switch_id(m.step) for m in batch if m.step}
        assert named <= {switch_id(m.payment) for m in batch if m.payment}


def test_expiring_holds_are_back_dated_to_expire_seconds_after_they_are_sent(
    reference: dict,
) -> None:
    life = {x["channel"]: x["hold_expiry_s"] for x in reference["channel_limits"]
            if "hold_expiry_s" in x}  # fmt: skip
    assert life == {"WEB": 7 * 24 * 3600, "POS": 3 * 24 * 3600}
    before = utc_now_ms()
    sim = TrafficSimulator(reference, SEED, START, live=True, lifecycle=True)
    expiring = [m.payment for m in sim.generate(8_000) if m.kind == "card_expiry"]
    assert expiring
    for p in expiring:
        expires_at = p["occurred_at"] + timedelta(seconds=life[p["channel"]])
        assert before < expires_at <= utc_now_ms() + timedelta(seconds=EXPIRY_LEAD_S)
    # The validator still takes them: no older than the switch accepts.
    strict = TrafficSimulator(reference, SEED, START, lifecycle=True,
                              max_event_age_s=4 * 24 * 3600)  # fmt: skip
    assert not strict._expires_in_time("WEB") and strict._expires_in_time("POS")


def settle_in_order(
    messages: list[SimulatedMessage], reference: dict[str, Any], schedule: FeeSchedule
) -> tuple[dict[str, str], list[tuple[SimulatedMessage, Any]]]:
    """What settlement decides, replaying what the validator passes in order on one
    partition, the switch's expiries last: each payment's state, each step's decision."""
    from consumers.expiry import expiry_event
    from consumers.lifecycle import Funds, PaymentView
    from consumers.settlement import Settlement, SettlementContext
    from engine.events import PAYMENT_STEP_VALIDATED, PAYMENT_VALIDATED
    from tests.factories import inbound, validated_step

    limits = Limits(
        {(x["channel"], x["currency"]): x["max_amount_minor"] for x in reference["channel_limits"]},
        {(x["channel"], x["currency"]): x["hold_expiry_s"] for x in reference["channel_limits"]
         if "hold_expiry_s" in x},
    )  # fmt: skip
    stage = Settlement(Settings(), schedule, limits=limits)
    funds = {a["number"]: Funds(a["opening_balance_minor"], a["overdraft_limit_minor"])
             for a in reference["accounts"]}  # fmt: skip
    ctx = SettlementContext({}, funds, schedule, limits)
    states, decided = ctx.states, []
    for m in messages:
        if m.payment is not None and m.kind in GOOD_KINDS | set(LIFECYCLE_MIX) | {
            "insufficient_funds"
        }:
            p = dict(m.payment)
            states[p["payment_id"]] = "VALIDATED"
            ctx.payments[p["payment_id"]] = PaymentView(
                p["payment_id"], "VALIDATED", p["intent"], p["payer_bank"], p["payer_account"],
                p["payee_bank"], p["payee_account"], p["amount_minor"], p["currency"],
                p["channel"], p["payment_type"], p["egov_service"], 0, 0, 0,
            )  # fmt: skip
            ctx.absorb(stage.decide(inbound("validated", PAYMENT_VALIDATED.name, p), ctx))
        elif m.step is not None:
            record = validated_step(m.step)
            decision = stage.decide(inbound("validated", PAYMENT_STEP_VALIDATED.name, record), ctx)
            ctx.absorb(decision)
            decided.append((m, decision))
    for payment_id, hold in list(ctx.holds.items()):
        if hold.state == "ACTIVE":
            event = expiry_event(payment_id, ctx.payments[payment_id].payer_account,
                                 hold.expires_at)  # fmt: skip
            ctx.absorb(stage.decide(inbound("validated", PAYMENT_STEP_VALIDATED.name, event), ctx))
    return states, decided


def test_lifecycle_expectations_are_what_settlement_decides(
    lifecycle: list[SimulatedMessage], reference: dict, schedule: FeeSchedule
) -> None:
    """Every payment ends in the state its kind expects, every step as it expects, no
    payment fails for funds unless it is meant to, and only card_expiry holds expire."""
    states, decided = settle_in_order(lifecycle, reference, schedule)
    wrong = [
        (m.kind, states[m.payment["payment_id"]].lower(), m.expected_outcome)
        for m in lifecycle
        if m.payment is not None and m.payment["payment_id"] in states
        and states[m.payment["payment_id"]].lower() != m.expected_outcome
    ]  # fmt: skip
    assert wrong == []
    steps = [
        (m.kind, d.outcome, d.reason, m.expected_outcome, m.expected_reason)
        for m, d in decided
        if (d.outcome == "step_refused") != (m.expected_outcome == "refused")
        or (d.reason or None) != m.expected_reason
    ]
    assert steps == []
    assert len(decided) == len(steps_of(lifecycle))


def test_report_counts_steps_and_the_expiries_the_switch_owes(
    lifecycle: list[SimulatedMessage],
) -> None:
    report = SimulationReport(SEED, None)
    for m in lifecycle:
        report.count(m)
    kinds = Counter(m.kind for m in lifecycle)
    assert report.steps == len(steps_of(lifecycle))
    assert report.payments + report.steps == LIFECYCLE_MESSAGES
    assert report.expiries == kinds["card_expiry"] == report.by_expected["expired"]
    assert report.by_step["CAPTURE refused AM09"] == kinds["capture_above_hold"]
    assert report.by_step["REFUND refused AG01"] == kinds["refund_by_payer_bank"]
    assert sum(report.by_step.values()) == report.steps + report.expiries
    assert "steps:" in report.summary()


def test_publish_message_signs_a_step_as_its_sender_keyed_by_the_payer_account(
    lifecycle: list[SimulatedMessage], codec: AvroCodec
) -> None:
    import io

    from engine.config import Settings
    from engine.trust.signing import SIGNER_HEADER
    from producers.capture import CaptureWriter, parse_captured
    from producers.publisher import PaymentPublisher
    from producers.signing import simulated_signers

    step = next(m for m in lifecycle if m.kind == "refund")
    out = io.StringIO()
    offline = Settings(kafka_bootstrap_servers="127.0.0.1:1")  # send=False: never dialled
    signers = simulated_signers([step.step["sender_bank"]], "unit")
    with PaymentPublisher(
        offline, codec, signers=signers, capture=CaptureWriter(out), send=False
    ) as publisher:
        publish_message(publisher, step)  # the publisher's own step API, as sakk publish uses
    (sent,) = [parse_captured(line) for line in out.getvalue().splitlines()]
    assert sent.key == step.step["payer_account"].encode()
    assert dict(sent.headers)[SIGNER_HEADER] == step.signer.encode()
    assert codec.decode(sent.value).record == step.step


def test_sakk_simulate_sends_the_lifecycle_by_default() -> None:
    from sakk.cli.simulate import simulate as command

    (option,) = [p for p in command.params if p.name == "lifecycle"]
    assert option.default is True
