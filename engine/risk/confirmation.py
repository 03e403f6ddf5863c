"""The settlement bank's confirmation of a window's instruction, read and checked whole.

The confirmation is the pacs.002.001.10 status report the settlement bank returns for
the pacs.009 (``docs/settlement.md`` says why this message rather than a camt.054 or a
file of Sakk's own): ``OrgnlGrpInfAndSts/OrgnlMsgId`` names the instruction, hence the
window, its currency and its attempt; each ``TxInfAndSts`` reports one transaction with
``TxSts`` ``ACSC`` (settlement completed) and, in ``OrgnlTxRef``, the amount booked and
the two agents, the bank on one side and the switch's settlement account on the other.
The side the bank is on gives the sign: debited is what it paid (+), credited what it was
paid (-), the same sign as a position.

The check (:func:`check_confirmation`) compares it with the window's nets and lists
*every* difference, never only the first: the instruction named, each bank exactly once,
each amount equal to the net in the window's currency, each line settled, the amounts
summing to zero. Any difference refuses the confirmation whole: a window is settled with
all of its banks or not at all. A bank whose net is zero was not instructed, so it must
not appear. The file is parsed safely (:mod:`engine.iso.safe_xml`) and must validate
against the official XSD before any of it is read.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from lxml import etree
from lxml.builder import ElementMaker

from engine.iso.amounts import AmountError, to_decimal_text, to_minor
from engine.iso.build import financial_institution, iso_datetime, maker, message_id, serialize
from engine.iso.errors import InvalidMessageError
from engine.iso.safe_xml import parse
from engine.iso.schemas import PACS_002, identify, violations
from engine.risk.instruction import PACS_009, Parties, SettlementBatch

SETTLED = "ACSC"  # AcceptedSettlementCompleted
MAX_LINES = 10_000  # lines read from one confirmation, as many as an instruction may have


@dataclass(frozen=True)
class ConfirmedLine:
    """One transaction of the confirmation, as read: ``problem`` says why it is unreadable."""

    index: int  # 1-based, in document order
    bank: str | None
    net_minor: int | None  # signed as a position: + when the bank was debited
    currency: str | None
    status: str | None
    problem: str | None = None


@dataclass(frozen=True)
class Confirmation:
    """What the settlement bank says it did: the instruction it answers, its lines."""

    instruction_ids: tuple[str, ...]
    group_status: str | None
    lines: tuple[ConfirmedLine, ...]


# -- the differences: one type per kind, each with its readable sentence ----------------


@dataclass(frozen=True)
class WrongInstruction:
    expected: str
    found: tuple[str, ...]

    def __str__(self) -> str:
        found = ", ".join(self.found) or "no instruction"
        return f"answers {found}, not this window's instruction {self.expected}"


@dataclass(frozen=True)
class GroupNotSettled:
    status: str

    def __str__(self) -> str:
        return f"the group's status is {self.status}, not {SETTLED}"


@dataclass(frozen=True)
class UnreadableLine:
    index: int
    why: str

    def __str__(self) -> str:
        return f"transaction {self.index}: {self.why}"


@dataclass(frozen=True)
class LineNotSettled:
    bank: str
    status: str | None

    def __str__(self) -> str:
        return f"bank {self.bank}: status {self.status or 'missing'}, not {SETTLED}"


@dataclass(frozen=True)
class WrongCurrency:
    bank: str
    expected: str
    found: str | None

    def __str__(self) -> str:
        return f"bank {self.bank}: amount in {self.found}, not {self.expected}"


@dataclass(frozen=True)
class DuplicateBank:
    bank: str
    times: int

    def __str__(self) -> str:
        return f"bank {self.bank} appears {self.times} times"


@dataclass(frozen=True)
class MissingBank:
    bank: str
    expected_minor: int

    def __str__(self) -> str:
        return f"bank {self.bank} is missing (net {self.expected_minor})"


@dataclass(frozen=True)
class UnexpectedBank:
    bank: str
    confirmed_minor: int | None

    def __str__(self) -> str:
        return f"bank {self.bank} has no net to settle in this window"


@dataclass(frozen=True)
class WrongAmount:
    bank: str
    expected_minor: int
    confirmed_minor: int

    def __str__(self) -> str:
        return f"bank {self.bank}: confirmed {self.confirmed_minor}, net is {self.expected_minor}"


@dataclass(frozen=True)
class SumNotZero:
    total_minor: int

    def __str__(self) -> str:
        return f"the confirmed amounts sum to {self.total_minor}, not zero"


Difference = (
    WrongInstruction | GroupNotSettled | UnreadableLine | LineNotSettled | WrongCurrency
    | DuplicateBank | MissingBank | UnexpectedBank | WrongAmount | SumNotZero
)  # fmt: skip


@dataclass(frozen=True)
class Confirmed:
    """Every bank's settled amount equals its net: the window may become SETTLED."""

    batch: SettlementBatch


@dataclass(frozen=True)
class ConfirmationRefused:
    """The confirmation differs from the window: nothing is settled; every difference."""

    batch: SettlementBatch
    differences: tuple[Difference, ...]

    @property
    def report(self) -> str:
        return "; ".join(map(str, self.differences))


# -- checking ----------------------------------------------------------------------------


def check_confirmation(
    batch: SettlementBatch, confirmation: Confirmation
) -> tuple[Difference, ...]:
    """Every difference between ``confirmation`` and ``batch``, in a stable order."""
    found: list[Difference] = []
    if confirmation.instruction_ids != (batch.message_id,):
        found.append(WrongInstruction(batch.message_id, confirmation.instruction_ids))
    if confirmation.group_status not in (None, SETTLED):
        found.append(GroupNotSettled(confirmation.group_status))
    readable = []
    for line in confirmation.lines:
        if line.problem is not None or line.bank is None or line.net_minor is None:
            found.append(UnreadableLine(line.index, line.problem or "unreadable"))
        else:
            readable.append(line)
    found.extend(_line_differences(batch, readable))
    total = sum(line.net_minor or 0 for line in readable if line.currency == batch.currency)
    if total != 0:
        found.append(SumNotZero(total))
    return tuple(found)


def _line_differences(batch: SettlementBatch, lines: list[ConfirmedLine]) -> list[Difference]:
    expected = {line.bank: line.net_minor for line in batch.lines}
    counts = Counter(line.bank for line in lines if line.bank is not None)
    found: list[Difference] = []
    for line in lines:
        bank, confirmed = line.bank or "", line.net_minor or 0
        if line.status != SETTLED:
            found.append(LineNotSettled(bank, line.status))
        if line.currency != batch.currency:
            found.append(WrongCurrency(bank, batch.currency, line.currency))
        if bank not in expected:
            found.append(UnexpectedBank(bank, confirmed))
        elif counts[bank] == 1 and confirmed != expected[bank]:
            found.append(WrongAmount(bank, expected[bank], confirmed))
    found.extend(DuplicateBank(bank, n) for bank, n in sorted(counts.items()) if n > 1)
    found.extend(MissingBank(bank, net) for bank, net in expected.items() if bank not in counts)
    return found


def confirm(batch: SettlementBatch, confirmation: Confirmation) -> Confirmed | ConfirmationRefused:
    """The window's verdict on ``confirmation``: settled whole, or refused whole."""
    differences = check_confirmation(batch, confirmation)
    return ConfirmationRefused(batch, differences) if differences else Confirmed(batch)


# -- reading -----------------------------------------------------------------------------


def read_confirmation(data: bytes, parties: Parties) -> Confirmation:
    """The pacs.002 in ``data``; raises an IsoError when the file as a whole is unusable
    (unsafe, malformed, another message, or invalid against its XSD)."""
    tree = parse(data)
    root = tree.getroot()
    identify(root, (PACS_002,))
    issues = tuple(map(str, violations(tree, PACS_002)))
    if issues:
        raise InvalidMessageError("the confirmation breaks pacs.002.001.10", issues[:20])
    ns = {"p": PACS_002.namespace}
    groups = root.xpath("p:FIToFIPmtStsRpt/p:OrgnlGrpInfAndSts", namespaces=ns)
    transactions = root.xpath("p:FIToFIPmtStsRpt/p:TxInfAndSts", namespaces=ns)
    if len(transactions) > MAX_LINES:
        raise InvalidMessageError(f"{len(transactions)} transactions, over {MAX_LINES}")
    instruction_ids = tuple(_instruction_named(g, ns) for g in groups)
    statuses = [_text(g, "p:GrpSts", ns) for g in groups]
    group_status = next((s for s in statuses if s is not None and s != SETTLED), None)
    lookup = _BankLookup.of(parties)
    lines = tuple(_read_line(i, tx, ns, lookup) for i, tx in enumerate(transactions, start=1))
    return Confirmation(instruction_ids, group_status, lines)


@dataclass(frozen=True)
class _BankLookup:
    switch: str
    by_bic8: Mapping[str, str]

    @classmethod
    def of(cls, parties: Parties) -> _BankLookup:
        by_bic8 = {bic.strip().upper()[:8]: code for code, bic in parties.bics.items() if bic}
        return cls(parties.switch, by_bic8)

    def code(self, fin_instn_id: etree._Element | None, ns: dict[str, str]) -> str | None:
        """The bank code an agent names: by BIC (first 8 characters) or member id."""
        if fin_instn_id is None:
            return None
        bic = _text(fin_instn_id, "p:BICFI", ns)
        if bic is not None:
            return self.by_bic8.get(bic.upper()[:8], f"BIC {bic}")
        return _text(fin_instn_id, "p:ClrSysMmbId/p:MmbId", ns)


def _read_line(
    index: int, tx: etree._Element, ns: dict[str, str], lookup: _BankLookup
) -> ConfirmedLine:
    status = _text(tx, "p:TxSts", ns)
    amount = _first(tx, "p:OrgnlTxRef/p:IntrBkSttlmAmt", ns)
    debtor = lookup.code(_first(tx, "p:OrgnlTxRef/p:Dbtr/p:Agt/p:FinInstnId", ns), ns)
    creditor = lookup.code(_first(tx, "p:OrgnlTxRef/p:Cdtr/p:Agt/p:FinInstnId", ns), ns)

    def unreadable(why: str) -> ConfirmedLine:
        return ConfirmedLine(index, None, None, None, status, why)

    if amount is None or amount.text is None:
        return unreadable("no OrgnlTxRef/IntrBkSttlmAmt")
    currency = amount.get("Ccy")
    if (debtor == lookup.switch) == (creditor == lookup.switch):
        return unreadable("the switch's account must be exactly one of Dbtr and Cdtr agents")
    bank = creditor if debtor == lookup.switch else debtor
    if bank is None:
        return unreadable("the bank's agent has neither BICFI nor ClrSysMmbId")
    try:
        minor = to_minor(amount.text, currency or "")
    except AmountError as exc:
        return unreadable(str(exc))
    return ConfirmedLine(index, bank, minor if debtor == bank else -minor, currency, status)


def _instruction_named(group: etree._Element, ns: dict[str, str]) -> str:
    """The instruction a group answers: its message id, with its message name when that
    is not the pacs.009 Sakk sends (so that the difference shows it)."""
    msg_id, name = _text(group, "p:OrgnlMsgId", ns) or "", _text(group, "p:OrgnlMsgNmId", ns)
    return msg_id if name == PACS_009.identifier else f"{name} {msg_id}"


def _first(node: etree._Element, path: str, ns: dict[str, str]) -> etree._Element | None:
    found = node.xpath(path, namespaces=ns)
    return found[0] if isinstance(found, list) and found else None  # type: ignore[return-value]


def _text(node: etree._Element, path: str, ns: dict[str, str]) -> str | None:
    element = _first(node, path, ns)
    return None if element is None or element.text is None else element.text.strip()


# -- what a settlement bank that did as instructed answers (demo, chaos, tests) ----------


@dataclass(frozen=True)
class AnswerLine:
    """One transaction of an answer: a bank, its signed amount, currency and status."""

    bank: str
    net_minor: int
    currency: str
    status: str = SETTLED


def answer_lines(batch: SettlementBatch) -> tuple[AnswerLine, ...]:
    """The lines of a faithful answer: every instructed bank, its net, settled."""
    return tuple(AnswerLine(line.bank, line.net_minor, batch.currency) for line in batch.lines)


def build_answer(
    instruction_id: str,
    lines: Sequence[AnswerLine],
    parties: Parties,
    created_at: datetime,
    group_status: str = SETTLED,
) -> bytes:
    """A pacs.002.001.10 answering ``instruction_id`` with ``lines``, valid against the XSD.

    What the settlement bank sends; Sakk builds one only to play the settlement bank in the
    demo, the chaos run and the tests (a wrong answer is built from wrong ``lines``).
    """
    e = maker(PACS_002)
    header = e.GrpHdr(
        e.MsgId(message_id("SKC", instruction_id, iso_datetime(created_at))),
        e.CreDtTm(iso_datetime(created_at)),
    )
    group = e.OrgnlGrpInfAndSts(
        e.OrgnlMsgId(instruction_id), e.OrgnlMsgNmId(PACS_009.identifier), e.GrpSts(group_status)
    )
    transactions = [_answer_line(e, line, parties) for line in lines]
    return serialize(e.Document(e.FIToFIPmtStsRpt(header, group, *transactions)), PACS_002)


def _answer_line(e: ElementMaker, line: AnswerLine, parties: Parties) -> etree._Element:
    bank = e.Agt(financial_institution(e, line.bank, parties.bics))
    switch = e.Agt(financial_institution(e, parties.switch, parties.bics))
    debtor, creditor = (bank, switch) if line.net_minor > 0 else (switch, bank)
    amount = to_decimal_text(line.net_minor, line.currency)
    return e.TxInfAndSts(
        e.TxSts(line.status),
        e.OrgnlTxRef(e.IntrBkSttlmAmt(amount, Ccy=line.currency), e.Dbtr(debtor), e.Cdtr(creditor)),
    )
