"""Reading an inbound ISO 20022 file: safe parse, version check, XSD, then each transaction.

The file is checked against its official message definition first. A violation inside
one transaction makes that transaction bad and leaves the others alone: every problem of
it is reported (lxml's error log holds them all), each with the transaction's place, the
element's path inside it and the reason, then what mapping finds on elements the XSD
did not already name; a violation anywhere else (the group header, the
message structure) refuses the whole file, since no transaction can be trusted without
its header.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from engine.iso import safe_xml
from engine.iso.directory import BankDirectory
from engine.iso.errors import InvalidMessageError, MappingError
from engine.iso.mapping import MessageContext, Scope, bank_reference, map_transaction, remittance
from engine.iso.schemas import PACS_008, PAIN_001, Definition, SchemaIssue, identify, violations


@dataclass(frozen=True)
class Layout:
    """Where one inbound message keeps its transactions and their amount."""

    transactions: str  # path from the message element
    amount: str
    default_channel: str  # see docs/iso20022.md


LAYOUTS = {
    PACS_008: Layout("CdtTrfTxInf", "IntrBkSttlmAmt", "WEB"),
    PAIN_001: Layout("PmtInf/CdtTrfTxInf", "Amt/InstdAmt", "WEB"),
}


@dataclass(frozen=True)
class TransactionIssue:
    """Why one transaction was not published: which one, which element, why."""

    index: int  # 1-based, in file order
    label: str  # e.g. PmtInf[1]/CdtTrfTxInf[3]
    reference: str | None
    element: str
    reason: str

    def __str__(self) -> str:
        ref = f" ({self.reference})" if self.reference else ""
        return f"transaction {self.index} {self.label}{ref}: {self.element}: {self.reason}"


@dataclass(frozen=True)
class MappedTransaction:
    index: int
    label: str
    payment: dict[str, Any]
    remittance: tuple[str, ...]


@dataclass
class ParsedMessage:
    definition: Definition
    message_id: str
    transactions: list[MappedTransaction] = field(default_factory=list)
    issues: list[TransactionIssue] = field(default_factory=list)  # all, several per transaction
    refused: int = 0  # transactions with at least one issue

    @property
    def count(self) -> int:
        return len(self.transactions) + self.refused


def read_message(data: bytes, directory: BankDirectory) -> ParsedMessage:
    """Every transaction of ``data`` mapped or reported; raises IsoError for the whole file."""
    tree = safe_xml.parse(data)
    definition = identify(tree.getroot())
    layout = LAYOUTS[definition]
    message = tree.getroot()[0]
    header = message.find(definition.tag("GrpHdr"))
    transactions = message.findall("/".join(map(definition.tag, layout.transactions.split("/"))))
    by_transaction = _schema_issues(tree, definition, transactions)
    message_id = _header_text(header, definition, "MsgId")
    _check_count(header, definition, len(transactions))
    ctx = MessageContext(
        message_id, definition.identifier, layout.amount, layout.default_channel, directory
    )
    parsed = ParsedMessage(definition, message_id)
    for index, element in enumerate(transactions, 1):
        scope = _scope(element, message, header, definition)
        label = _label(element, message)
        found = [
            _schema_issue(index, label, scope, element, issue)
            for issue in by_transaction.get(element, ())
        ]
        try:
            payment = map_transaction(scope, index, ctx)
        except MappingError as exc:
            if exc.element not in {issue.element for issue in found}:
                found.append(
                    TransactionIssue(index, label, _reference(scope), exc.element, exc.reason)
                )
        if found:
            parsed.issues += found
            parsed.refused += 1
            continue
        parsed.transactions.append(MappedTransaction(index, label, payment, remittance(scope)))
    return parsed


def _schema_issues(
    tree: etree._ElementTree, definition: Definition, transactions: list[etree._Element]
) -> dict[etree._Element, list[SchemaIssue]]:
    """XSD violations by the transaction they are in; raises for any outside one."""
    owners = set(transactions)
    found: dict[etree._Element, list[SchemaIssue]] = defaultdict(list)
    outside: list[str] = []
    for issue in violations(tree, definition):
        owner = _owner(issue.element, owners)
        if owner is None:
            outside.append(str(issue))
        else:
            found[owner].append(issue)
    if outside:
        raise InvalidMessageError(
            f"{definition.identifier}: the file breaks its message definition", tuple(outside[:20])
        )
    return found


def _owner(element: etree._Element | None, owners: set[etree._Element]) -> etree._Element | None:
    while element is not None:
        if element in owners:
            return element
        element = element.getparent()
    return None


def _header_text(header: etree._Element, definition: Definition, name: str) -> str:
    found = header.find(definition.tag(name))
    return "" if found is None or found.text is None else found.text.strip()


def _check_count(header: etree._Element, definition: Definition, actual: int) -> None:
    declared = _header_text(header, definition, "NbOfTxs")
    if declared != str(actual):
        raise InvalidMessageError(
            f"GrpHdr/NbOfTxs says {declared}, the file holds {actual} transactions"
        )


def _scope(
    element: etree._Element, message: etree._Element, header: etree._Element, d: Definition
) -> Scope:
    levels = [element]
    parent = element.getparent()
    while parent is not None and parent is not message:
        levels.append(parent)
        parent = parent.getparent()
    levels.append(header)
    return Scope(d.namespace, tuple(levels))


def _label(element: etree._Element, message: etree._Element) -> str:
    """``PmtInf[2]/CdtTrfTxInf[5]``: where a transaction sits, by position among its kind."""
    steps = []
    while element is not None and element is not message:
        same = [s for s in element.itersiblings(preceding=True) if s.tag == element.tag]
        steps.append(f"{etree.QName(element).localname}[{len(same) + 1}]")
        element = element.getparent()
    return "/".join(reversed(steps))


def _relative(element: etree._Element | None, transaction: etree._Element) -> str:
    """The element's path inside its transaction, by local names ('.' for the transaction)."""
    steps = []
    while element is not None and element is not transaction:
        steps.append(etree.QName(element).localname)
        element = element.getparent()
    return "/".join(reversed(steps)) or "."


def _reference(scope: Scope) -> str | None:
    try:
        return bank_reference(scope)
    except MappingError:
        return None


def _schema_issue(
    index: int, label: str, scope: Scope, transaction: etree._Element, issue: SchemaIssue
) -> TransactionIssue:
    element = _relative(issue.element, transaction)
    return TransactionIssue(index, label, _reference(scope), element, issue.message)
