"""The settlement instruction: one pacs.009.001.08 per window and currency, to the RTGS.

Why pacs.009 (FinancialInstitutionCreditTransfer) and not a camt statement is argued in
``docs/settlement.md``: the settlement bank is asked to *move* money between banks'
settlement accounts, which is a credit transfer between financial institutions; a camt
statement only *reports* what was booked. The switch holds a technical settlement account
at the settlement bank (as an ancillary system does in an RTGS), so each bank's net is one
transaction against it:

- a bank that owes (net > 0) is the ``Dbtr``, the switch's account the ``Cdtr``;
- a bank that is owed (net < 0) is the ``Cdtr``, the switch's account the ``Dbtr``;
- a bank whose net is zero has nothing to move and is left out.

The nets sum to zero, so the switch's account ends where it started. The settlement bank
books all of the message or none of it (its rules for ancillary systems: an instruction
is settled whole). ``GrpHdr/MsgId`` names the window, its currency and the attempt, so
the confirmation can be matched to exactly this instruction. Amounts are exact: integer
minor units written with the currency's exponent (:func:`engine.iso.amounts.to_decimal_text`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime

from lxml import etree
from lxml.builder import ElementMaker

from engine.iso.amounts import to_decimal_text
from engine.iso.build import (
    MAX35,
    financial_institution,
    iso_date,
    iso_datetime,
    maker,
    message_id,
    serialize,
)
from engine.iso.schemas import Definition
from engine.money import is_known_currency

PACS_009 = Definition("pacs.009.001.08", "FICdtTrf")
MAX_BANKS = 10_000  # lines of one instruction; Max15NumericText allows far more
MAX_TOTAL_MINOR = 10**18 - 1  # TtlIntrBkSttlmAmt: 18 digits at most (totalDigits)
SETTLEMENT_METHOD = "CLRG"  # settled through the clearing system: the RTGS itself


@dataclass(frozen=True)
class NetLine:
    """One bank's net in the window: positive when it owes the others."""

    bank: str
    net_minor: int

    @property
    def amount_minor(self) -> int:
        """What moves: the net without its sign (the direction is who is debited)."""
        return abs(self.net_minor)

    @property
    def pays(self) -> bool:
        return self.net_minor > 0


@dataclass(frozen=True)
class SettlementBatch:
    """What one window asks the settlement bank to move in one currency.

    Invariants, checked when it is made: a known currency, each bank once, the nets sum to
    zero (every minor unit one bank pays, another receives), at most :data:`MAX_BANKS`.
    """

    window_id: str
    attempt: int
    currency: str
    nets: tuple[NetLine, ...]

    def __post_init__(self) -> None:
        if not is_known_currency(self.currency):
            raise ValueError(f"currency {self.currency!r} is not one Sakk settles")
        if self.attempt < 1:
            raise ValueError(f"attempt {self.attempt}: the first settle is attempt 1")
        banks = [line.bank for line in self.nets]
        if len(set(banks)) != len(banks):
            raise ValueError(f"window {self.window_id}: a bank appears twice in its nets")
        if len(banks) > MAX_BANKS:
            raise ValueError(f"window {self.window_id}: {len(banks)} banks, over {MAX_BANKS}")
        moved = sum(line.amount_minor for line in self.nets)
        if moved > MAX_TOTAL_MINOR:
            raise ValueError(f"window {self.window_id}: {moved} minor units, over the 18 digits")
        total = sum(line.net_minor for line in self.nets)
        if total != 0:
            raise ValueError(f"window {self.window_id}: nets sum to {total}, not zero")

    @classmethod
    def of(
        cls, window_id: str, attempt: int, currency: str, nets: Mapping[str, int]
    ) -> SettlementBatch:
        """The batch of ``nets`` (bank code to net), banks in code order."""
        lines = tuple(NetLine(bank, nets[bank]) for bank in sorted(nets))
        return cls(window_id, attempt, currency, lines)

    @property
    def lines(self) -> tuple[NetLine, ...]:
        """The lines that move money: every bank whose net is not zero, in code order."""
        return tuple(line for line in self.nets if line.net_minor != 0)

    @property
    def message_id(self) -> str:
        """The instruction's ``MsgId``: the same window, currency and attempt, the same id."""
        return message_id("SKW", self.window_id, self.currency, str(self.attempt))

    def end_to_end_id(self, bank: str) -> str:
        """A line's ``EndToEndId``: its bank's code after the message id, unique everywhere."""
        return message_id("SKL", self.message_id, bank)


@dataclass(frozen=True)
class Parties:
    """Who the instruction names, by bank code (their BICs in ``bics``, else member ids).

    ``switch``: the holder of the technical settlement account (the switch's own code);
    ``settlement_bank``: the RTGS operator (Bank Al-Maghrib for SRBM); ``clearing_system``:
    the RTGS's name as the settlement bank wants it in ``SttlmInf/ClrSys/Prtry``.
    """

    switch: str
    settlement_bank: str
    bics: Mapping[str, str]
    clearing_system: str = "SRBM"

    def __post_init__(self) -> None:
        if not 0 < len(self.clearing_system) <= MAX35:
            raise ValueError(f"clearing system {self.clearing_system!r}: 1..{MAX35} characters")


def build_instruction(
    batch: SettlementBatch, parties: Parties, created_at: datetime, settlement_date: date
) -> bytes:
    """The pacs.009 of ``batch``, validated against the official XSD (ValueError if not).

    Refused (ValueError) when no bank has anything to move: an empty window needs no
    instruction, and pacs.009 needs at least one transaction.
    """
    lines = batch.lines
    if not lines:
        raise ValueError(f"window {batch.window_id}: every net is zero, nothing to instruct")
    if parties.switch in {line.bank for line in lines}:
        raise ValueError(f"the switch's code {parties.switch!r} is also a bank of the window")
    e = maker(PACS_009)
    total = sum(line.amount_minor for line in lines)
    header = e.GrpHdr(
        e.MsgId(batch.message_id),
        e.CreDtTm(iso_datetime(created_at)),
        e.NbOfTxs(str(len(lines))),
        e.CtrlSum(to_decimal_text(total, batch.currency)),
        e.TtlIntrBkSttlmAmt(to_decimal_text(total, batch.currency), Ccy=batch.currency),
        e.IntrBkSttlmDt(iso_date(settlement_date)),
        e.SttlmInf(e.SttlmMtd(SETTLEMENT_METHOD), e.ClrSys(e.Prtry(parties.clearing_system))),
        e.InstgAgt(financial_institution(e, parties.switch, parties.bics)),
        e.InstdAgt(financial_institution(e, parties.settlement_bank, parties.bics)),
    )
    transactions = [_transaction(e, batch, line, parties) for line in lines]
    root = e.Document(e.FICdtTrf(header, *transactions))
    return serialize(root, PACS_009)


def _transaction(
    e: ElementMaker, batch: SettlementBatch, line: NetLine, parties: Parties
) -> etree._Element:
    bank = financial_institution(e, line.bank, parties.bics)
    switch = financial_institution(e, parties.switch, parties.bics)
    debtor, creditor = (bank, switch) if line.pays else (switch, bank)
    end_to_end = batch.end_to_end_id(line.bank)
    return e.CdtTrfTxInf(
        e.PmtId(e.InstrId(end_to_end), e.EndToEndId(end_to_end)),
        e.IntrBkSttlmAmt(to_decimal_text(line.amount_minor, batch.currency), Ccy=batch.currency),
        e.Dbtr(debtor),
        e.Cdtr(creditor),
    )
