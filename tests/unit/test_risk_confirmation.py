"""The settlement bank's confirmation: one test per kind of mismatch, all reported at once."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.iso.errors import (
    InvalidMessageError,
    MalformedXmlError,
    UnsafeXmlError,
    UnsupportedMessageError,
)
from engine.iso.safe_xml import parse
from engine.iso.schemas import PACS_002, assert_valid
from engine.risk.confirmation import (
    AnswerLine,
    ConfirmationRefused,
    Confirmed,
    DuplicateBank,
    GroupNotSettled,
    LineNotSettled,
    MissingBank,
    SumNotZero,
    UnexpectedBank,
    UnreadableLine,
    WrongAmount,
    WrongCurrency,
    WrongInstruction,
    answer_lines,
    build_answer,
    check_confirmation,
    confirm,
    read_confirmation,
)
from engine.risk.instruction import Parties, SettlementBatch, build_instruction

EXAMPLES = 60  # random windows answered, each answer built, validated and read back
NOW = datetime(2026, 12, 6, 17, 30, tzinfo=UTC)
PARTIES = Parties("SAKK", "BAM", {"007": "BCMAMAMC", "011": "BMCEMAMC", "BAM": "BKAMMAMR"})
BATCH = SettlementBatch.of("2026-12-06/1", 1, "MAD", {"007": 15_000, "011": -10_000, "022": -5_000})
GOOD = answer_lines(BATCH)


def answer(
    lines: tuple[AnswerLine, ...] | list[AnswerLine],
    instruction_id: str = BATCH.message_id,
    group_status: str = "ACSC",
) -> bytes:
    return build_answer(instruction_id, lines, PARTIES, NOW, group_status)


def differences(data: bytes, batch: SettlementBatch = BATCH) -> tuple[object, ...]:
    return check_confirmation(batch, read_confirmation(data, PARTIES))


def test_a_faithful_answer_settles_the_window() -> None:
    data = answer(GOOD)

    assert_valid(parse(data), PACS_002)
    assert confirm(BATCH, read_confirmation(data, PARTIES)) == Confirmed(BATCH)


def test_lines_are_read_with_the_sign_of_a_position() -> None:
    confirmation = read_confirmation(answer(GOOD), PARTIES)

    assert [(line.bank, line.net_minor) for line in confirmation.lines] == [
        ("007", 15_000),
        ("011", -10_000),
        ("022", -5_000),
    ]
    assert confirmation.instruction_ids == (BATCH.message_id,)


def test_an_answer_to_another_window_is_refused() -> None:
    other = SettlementBatch.of("2026-12-06/2", 1, "MAD", {"007": 15_000, "011": -15_000})

    assert differences(answer(GOOD, instruction_id=other.message_id)) == (
        WrongInstruction(BATCH.message_id, (other.message_id,)),
    )


def test_a_late_answer_to_an_aborted_attempt_is_refused() -> None:
    second = SettlementBatch("2026-12-06/1", 2, "MAD", BATCH.nets)

    assert differences(answer(GOOD), second) == (
        WrongInstruction(second.message_id, (BATCH.message_id,)),
    )


def test_a_missing_bank_is_refused_with_its_net() -> None:
    found = differences(answer(GOOD[:2]))

    assert found == (MissingBank("022", -5_000), SumNotZero(5_000))


def test_a_bank_with_no_net_in_the_window_is_refused() -> None:
    found = differences(answer([*GOOD, AnswerLine("030", 7, "MAD"), AnswerLine("040", -7, "MAD")]))

    assert found == (UnexpectedBank("030", 7), UnexpectedBank("040", -7))


def test_an_unknown_bic_is_an_unexpected_bank() -> None:
    parties = Parties("SAKK", "BAM", {**PARTIES.bics, "099": "ZZZZMAMC"})
    data = build_answer(BATCH.message_id, [*GOOD, AnswerLine("099", 0, "MAD")], parties, NOW)

    assert check_confirmation(BATCH, read_confirmation(data, PARTIES)) == (
        UnexpectedBank("BIC ZZZZMAMC", 0),
    )


def test_a_bank_named_twice_is_refused() -> None:
    lines = [GOOD[0], GOOD[1], GOOD[1], GOOD[2]]

    assert differences(answer(lines)) == (DuplicateBank("011", 2), SumNotZero(-10_000))


def test_a_wrong_amount_is_refused_with_both_amounts() -> None:
    lines = [AnswerLine("007", 15_001, "MAD"), GOOD[1], GOOD[2]]

    assert differences(answer(lines)) == (WrongAmount("007", 15_000, 15_001), SumNotZero(1))


def test_money_moved_the_wrong_way_is_a_wrong_amount() -> None:
    lines = [GOOD[0], AnswerLine("011", 10_000, "MAD"), GOOD[2]]

    assert differences(answer(lines)) == (WrongAmount("011", -10_000, 10_000), SumNotZero(20_000))


def test_a_wrong_currency_is_refused() -> None:
    lines = [GOOD[0], AnswerLine("011", -10_000, "EUR"), GOOD[2]]

    assert differences(answer(lines)) == (WrongCurrency("011", "MAD", "EUR"), SumNotZero(10_000))


def test_a_line_not_settled_is_refused() -> None:
    lines = [GOOD[0], AnswerLine("011", -10_000, "MAD", status="RJCT"), GOOD[2]]

    assert differences(answer(lines)) == (LineNotSettled("011", "RJCT"),)


@pytest.mark.parametrize("status", ["RJCT", "PART", "ACSP"])
def test_a_group_not_settled_is_refused(status: str) -> None:
    assert differences(answer(GOOD, group_status=status)) == (GroupNotSettled(status),)


def test_every_difference_is_reported_not_only_the_first() -> None:
    lines = [
        AnswerLine("007", 15_001, "MAD", status="RJCT"),
        AnswerLine("022", -5_000, "EUR"),
        AnswerLine("022", -5_000, "MAD"),
        AnswerLine("030", 1, "MAD"),
    ]
    other = SettlementBatch.of("w9", 1, "MAD", {"007": 1, "011": -1}).message_id

    result = confirm(BATCH, read_confirmation(answer(lines, instruction_id=other), PARTIES))

    assert isinstance(result, ConfirmationRefused)
    assert result.differences == (
        WrongInstruction(BATCH.message_id, (other,)),
        LineNotSettled("007", "RJCT"),
        WrongAmount("007", 15_000, 15_001),
        WrongCurrency("022", "MAD", "EUR"),
        UnexpectedBank("030", 1),
        DuplicateBank("022", 2),
        MissingBank("011", -10_000),
        SumNotZero(10_002),
    )
    assert result.report.count(";") == 7
    assert "bank 011 is missing (net -10000)" in result.report


# -- lines that cannot be read, files that cannot be used --------------------------------


def test_a_line_without_the_switch_on_either_side_is_unreadable() -> None:
    data = answer(GOOD).replace(b"<MmbId>SAKK</MmbId>", b"<MmbId>OTHER</MmbId>", 1)

    found = differences(data)

    assert found[0] == UnreadableLine(1, "the switch's account must be exactly one of Dbtr and "
                                         "Cdtr agents")  # fmt: skip
    assert MissingBank("007", 15_000) in found


def test_an_amount_finer_than_the_currency_is_unreadable_not_rounded() -> None:
    data = answer(GOOD).replace(b">150.00<", b">150.001<")

    found = differences(data)

    assert isinstance(found[0], UnreadableLine) and "decimals" in found[0].why


def test_a_line_without_an_amount_is_unreadable() -> None:
    data = answer(GOOD).replace(b'<IntrBkSttlmAmt Ccy="MAD">150.00</IntrBkSttlmAmt>', b"", 1)

    assert differences(data)[0] == UnreadableLine(1, "no OrgnlTxRef/IntrBkSttlmAmt")


def test_a_branch_bic_names_its_bank() -> None:
    data = answer(GOOD).replace(b"<BICFI>BCMAMAMC</BICFI>", b"<BICFI>BCMAMAMCXXX</BICFI>")

    assert differences(data) == ()


def test_an_answer_to_another_kind_of_message_shows_its_name() -> None:
    data = answer(GOOD).replace(b"<OrgnlMsgNmId>pacs.009.001.08", b"<OrgnlMsgNmId>pacs.008.001.08")

    assert differences(data) == (
        WrongInstruction(BATCH.message_id, (f"pacs.008.001.08 {BATCH.message_id}",)),
    )


def test_a_report_with_no_original_group_names_no_instruction() -> None:
    data = answer(GOOD)
    start, end = data.index(b"<OrgnlGrpInfAndSts>"), data.index(b"</OrgnlGrpInfAndSts>")
    data = data[:start] + data[end + len(b"</OrgnlGrpInfAndSts>") :]

    assert differences(data) == (WrongInstruction(BATCH.message_id, ()),)
    assert "no instruction" in str(differences(data)[0])


def test_a_file_with_a_doctype_is_refused_unread() -> None:
    data = answer(GOOD).replace(b"?>", b'?><!DOCTYPE x [<!ENTITY e "e">]>', 1)

    with pytest.raises(UnsafeXmlError):
        read_confirmation(data, PARTIES)


def test_a_file_that_is_not_xml_is_refused() -> None:
    with pytest.raises(MalformedXmlError):
        read_confirmation(b"007;150.00;ACSC", PARTIES)


def test_the_instruction_itself_is_not_a_confirmation() -> None:
    instruction = build_instruction(BATCH, PARTIES, NOW, NOW.date())

    with pytest.raises(UnsupportedMessageError, match="pacs.009.001.08"):
        read_confirmation(instruction, PARTIES)


def test_a_report_that_breaks_the_xsd_is_refused_whole() -> None:
    data = answer(GOOD).replace(b"<TxSts>ACSC</TxSts>", b"<TxSts>SETTLED</TxSts>", 1)

    with pytest.raises(InvalidMessageError, match="pacs.002.001.10"):
        read_confirmation(data, PARTIES)


# -- properties ---------------------------------------------------------------------------


@st.composite
def batches(draw: st.DrawFn) -> SettlementBatch:
    count = draw(st.integers(2, 8))
    nets = draw(st.lists(st.integers(-(10**9), 10**9), min_size=count - 1, max_size=count - 1))
    nets.append(-sum(nets))
    return SettlementBatch.of("w", draw(st.integers(1, 3)), "MAD", dict(enumerate_banks(nets)))


def enumerate_banks(nets: list[int]) -> list[tuple[str, int]]:
    return [(f"B{i:02d}", net) for i, net in enumerate(nets)]


@settings(max_examples=EXAMPLES, deadline=None)
@given(batch=batches(), data=st.data())
def test_a_faithful_answer_is_confirmed_and_any_one_changed_amount_is_refused(
    batch: SettlementBatch, data: st.DataObject
) -> None:
    lines = answer_lines(batch)
    if not lines:
        return
    good = build_answer(batch.message_id, lines, PARTIES, NOW)
    assert confirm(batch, read_confirmation(good, PARTIES)) == Confirmed(batch)

    index = data.draw(st.integers(0, len(lines) - 1))
    delta = data.draw(st.integers(1, 10**6).flatmap(lambda n: st.sampled_from([n, -n])))
    changed = lines[index]
    bad_line = AnswerLine(changed.bank, changed.net_minor + delta, "MAD")
    bad_lines = [*lines[:index], bad_line, *lines[index + 1 :]]
    bad = build_answer(batch.message_id, bad_lines, PARTIES, NOW)

    result = confirm(batch, read_confirmation(bad, PARTIES))

    assert isinstance(result, ConfirmationRefused)
    assert WrongAmount(changed.bank, changed.net_minor, changed.net_minor + delta) in (
        result.differences
    )
    assert SumNotZero(delta) in result.differences
