"""One ISO 20022 credit transfer transaction -> one ``PaymentInitiated`` record.

The same code reads both inbound messages: a :class:`Scope` looks an element up in the
transaction first, then in the blocks around it (``PmtInf`` of a pain.001, then the group
header), which is where ISO 20022 lets a sender put what all its transactions share
(the debtor and its agent in pain.001, the payment type in either).

What becomes what (``docs/iso20022.md`` has the table):

- ``PmtId/EndToEndId``, or ``PmtId/InstrId`` when it is ``NOTPROVIDED``: the bank reference;
- ``IntrBkSttlmAmt`` (pacs.008) or ``Amt/InstdAmt`` (pain.001) with its ``Ccy``: the
  amount in minor units (:mod:`engine.iso.amounts`);
- ``DbtrAgt`` / ``CdtrAgt`` (BIC or member id): payer and payee banks;
- ``DbtrAcct`` / ``CdtrAcct`` (a Moroccan IBAN gives its 24-digit RIB, ``Othr/Id`` as is):
  the accounts;
- ``CtgyPurp``, ``Purp`` and ``LclInstrm/Prtry``: channel, payment type, e-government
  service (:func:`classify`);
- ``AccptncDtTm``, else the group header's ``CreDtTm``: ``occurred_at``;
- ``RmtInf/Ustrd``: ``remittance_info`` (:func:`remittance_info`);
- the message's ``MsgId`` and name, ``PmtId/InstrId``, ``EndToEndId``, ``TxId`` and
  ``UETR``: ``iso`` (:func:`iso_ids`), echoed in every answer so the bank matches it;
- what Sakk does not act on but an auditor may need (the parties' names and postal
  addresses, structured remittance, ...): ``iso_extras``, JSON (:func:`iso_extras`).

Ids are derived (UUIDv5) from the payer bank, the message id and the transaction's place
in it, so importing the same file twice publishes the same events, which the switch
handles once.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from lxml import etree

from engine.events import uuid5_text
from engine.iso.amounts import AmountError, to_minor
from engine.iso.directory import BankDirectory
from engine.iso.errors import MappingError
from engine.ledger.reference import CHANNELS

ISO_NAMESPACE = uuid.UUID("5a4b0c1e-7d1f-4c2e-9a55-5a4b4b000150")
NOT_PROVIDED = "NOTPROVIDED"
# ExternalPurpose1Code / ExternalCategoryPurpose1Code values of payments to the state.
EGOV_CODES = frozenset({"TAXS", "GOVT", "VATX"})
# Codes of paying for goods or services (e-commerce, purchases) rather than a transfer.
PURCHASE_CODES = frozenset({"EPAY", "GDDS"})
MOROCCAN_IBAN_LENGTH = 28  # "MA", 2 check digits, the 24-digit RIB
MAX_REMITTANCE_CHARS = 140  # ISO 20022 Max140Text, as remittance_info is
MAX_ID_CHARS = 35  # Max35Text: MsgId, InstrId, EndToEndId, TxId
MAX_EXTRAS_CHARS = 20_000  # the JSON of one transaction's extras: well above any real one
# Elements of a transaction kept as ``iso_extras`` (in schema order): the parties and
# their addresses, remittance beyond its unstructured lines, and what the payment's
# settlement said, none of which Sakk acts on.
EXTRA_ELEMENTS = (
    "IntrBkSttlmDt", "SttlmPrty", "InstdAmt", "XchgRate", "ChrgBr", "ChrgsInf",
    "UltmtDbtr", "InitgPty", "Dbtr", "DbtrAgt", "CdtrAgt", "Cdtr", "UltmtCdtr",
    "InstrForCdtrAgt", "InstrForNxtAgt", "Purp", "RgltryRptg", "Tax", "RltdRmtInf", "RmtInf",
    "SplmtryData",
)  # fmt: skip


@dataclass(frozen=True)
class Classification:
    channel: str
    payment_type: str
    egov_service: str | None = None


def classify(
    category: str | None,
    purpose: str | None,
    purpose_proprietary: str | None,
    local_instrument: str | None,
    default_channel: str,
) -> Classification:
    """Channel, payment type and e-government service from a transaction's codes.

    An e-government code (``TAXS``, ``GOVT``, ``VATX``, as category purpose or purpose)
    makes an EGOV payment; its service is ``Purp/Prtry`` when given (``VIGNETTE``, the
    fee-free vehicle tax), else the code. ``EPAY`` or ``GDDS`` make a PURCHASE; anything
    else a TRANSFER. The channel is ``LclInstrm/Prtry`` when it names a Sakk channel
    (``MOBILE``, ``BRANCH``, ...), else the message's default.
    """
    codes = {category, purpose}
    if codes & EGOV_CODES:
        return Classification("EGOV", "EGOV", purpose_proprietary or purpose or category)
    channel = local_instrument if local_instrument in CHANNELS else default_channel
    if channel == "EGOV":  # EGOV is for e-government codes only
        channel = default_channel
    payment_type = "PURCHASE" if codes & PURCHASE_CODES else "TRANSFER"
    return Classification(channel, payment_type)


@cache
def _clark(namespace: str, path: str) -> str:
    """``"DbtrAgt/FinInstnId"`` -> ``"{ns}DbtrAgt/{ns}FinInstnId"`` (once per path)."""
    return "/".join(f"{{{namespace}}}{step}" for step in path.split("/"))


@dataclass(frozen=True)
class Scope:
    """A transaction and the blocks around it, searched innermost first."""

    namespace: str
    levels: tuple[etree._Element, ...]

    def find(self, path: str) -> etree._Element | None:
        clark = _clark(self.namespace, path)
        for level in self.levels:
            found = level.find(clark)
            if found is not None:
                return found
        return None

    def text(self, path: str) -> str | None:
        found = self.find(path)
        return None if found is None or found.text is None else found.text.strip()

    def texts(self, path: str) -> Iterator[str]:
        for found in self.levels[0].iterfind(_clark(self.namespace, path)):
            if found.text:
                yield found.text.strip()


@dataclass(frozen=True)
class MessageContext:
    """What every transaction of one message shares."""

    message_id: str
    message_name: str  # pacs.008.001.08, pain.001.001.09
    amount_path: str  # IntrBkSttlmAmt (pacs.008) or Amt/InstdAmt (pain.001)
    default_channel: str
    directory: BankDirectory


def map_transaction(scope: Scope, index: int, ctx: MessageContext) -> dict[str, Any]:
    """The PaymentInitiated of one transaction; raises MappingError naming the element."""
    reference = bank_reference(scope)
    amount_minor, currency = amount(scope, ctx.amount_path)
    payer_bank = agent_bank(scope, "DbtrAgt", ctx.directory)
    classification = classify(
        scope.text("PmtTpInf/CtgyPurp/Cd"),
        scope.text("Purp/Cd"),
        scope.text("Purp/Prtry"),
        scope.text("PmtTpInf/LclInstrm/Prtry"),
        ctx.default_channel,
    )
    event_id = uuid5_text(ISO_NAMESPACE, f"event/{payer_bank}/{ctx.message_id}/{index}")
    return {
        "event_id": event_id,
        "payment_id": uuid5_text(ISO_NAMESPACE, f"payment/{event_id}"),
        "bank_reference": reference,
        "occurred_at": occurred_at(scope),
        "payer_bank": payer_bank,
        "payer_account": account(scope, "DbtrAcct"),
        "payee_bank": agent_bank(scope, "CdtrAgt", ctx.directory),
        "payee_account": account(scope, "CdtrAcct"),
        "amount_minor": amount_minor,
        "currency": currency,
        "channel": classification.channel,
        "payment_type": classification.payment_type,
        "merchant_category_code": None,
        "egov_service": classification.egov_service,
        "remittance_info": remittance_info(remittance(scope)),
        "iso": iso_ids(scope, ctx),
        "iso_extras": iso_extras(scope),
    }


def iso_ids(scope: Scope, ctx: MessageContext) -> dict[str, str | None]:
    """The bank's ids of the transaction, as its message gave them (the XSD bounds them)."""
    return {
        "msg_id": ctx.message_id[:MAX_ID_CHARS],
        "msg_name": ctx.message_name,
        "instr_id": scope.text("PmtId/InstrId"),
        "end_to_end_id": scope.text("PmtId/EndToEndId"),
        "tx_id": scope.text("PmtId/TxId"),
        "uetr": scope.text("PmtId/UETR"),
    }


def iso_extras(scope: Scope) -> str | None:
    """The elements of :data:`EXTRA_ELEMENTS` the transaction (or its ``PmtInf``) holds, as
    compact JSON: element name -> its content (:func:`element_json`); None without any."""
    found: dict[str, Any] = {}
    for name in EXTRA_ELEMENTS:
        for level in scope.levels[:-1]:  # the transaction, then a pain.001's PmtInf
            elements = level.findall(_clark(scope.namespace, name))
            if elements:
                values = [element_json(e) for e in elements]
                found[name] = values[0] if len(values) == 1 else values
                break
    if not found:
        return None
    text = json.dumps(found, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    if len(text) > MAX_EXTRAS_CHARS:
        raise MappingError(".", f"over {MAX_EXTRAS_CHARS} characters of elements Sakk keeps")
    return text


def element_json(element: etree._Element) -> Any:
    """An element as JSON: its text, or its children by local name (a list when repeated);
    attributes (``Ccy``) as ``@name``."""
    children = [c for c in element if isinstance(c.tag, str)]
    if not children:
        text = (element.text or "").strip()
        return (
            {f"@{k}": v for k, v in element.attrib.items()} | {"#": text}
            if element.attrib
            else text
        )
    out: dict[str, Any] = {f"@{k}": v for k, v in element.attrib.items()}
    for child in children:
        name, value = etree.QName(child).localname, element_json(child)
        if name in out:
            out[name] = (out[name] if isinstance(out[name], list) else [out[name]]) + [value]
        else:
            out[name] = value
    return out


def bank_reference(scope: Scope) -> str:
    """EndToEndId, or InstrId when the end-to-end id is NOTPROVIDED."""
    end_to_end = scope.text("PmtId/EndToEndId")
    if end_to_end and end_to_end != NOT_PROVIDED:
        return end_to_end
    instruction = scope.text("PmtId/InstrId")
    if instruction:
        return instruction
    raise MappingError("PmtId/EndToEndId", "NOTPROVIDED and no InstrId: no bank reference")


def amount(scope: Scope, path: str) -> tuple[int, str]:
    """(minor units, currency) of the transaction's amount."""
    element = scope.levels[0].find(_clark(scope.namespace, path))
    if element is None:
        if scope.levels[0].find(_clark(scope.namespace, "Amt/EqvtAmt")) is not None:
            raise MappingError("Amt/EqvtAmt", "an equivalent amount is not supported: use InstdAmt")
        raise MappingError(path, "missing")
    currency = element.get("Ccy", "")
    try:
        return to_minor(element.text or "", currency), currency
    except AmountError as exc:
        raise MappingError(path, str(exc)) from None


def agent_bank(scope: Scope, agent: str, directory: BankDirectory) -> str:
    """The bank code of ``agent``, by its BIC or its clearing member id."""
    bic = scope.text(f"{agent}/FinInstnId/BICFI")
    member = scope.text(f"{agent}/FinInstnId/ClrSysMmbId/MmbId")
    if bic is None and member is None:
        raise MappingError(f"{agent}/FinInstnId", "no BICFI and no ClrSysMmbId/MmbId")
    code = (directory.by_bic(bic) if bic else None) or (
        directory.by_member_id(member) if member else None
    )
    if code is None:
        named = f"BIC {bic}" if bic else f"member id {member}"
        raise MappingError(f"{agent}/FinInstnId", f"{named} is not a bank of this switch")
    return code


def account(scope: Scope, path: str) -> str:
    """The account number: a Moroccan IBAN gives its RIB, any other id is taken as is."""
    iban = scope.text(f"{path}/Id/IBAN")
    if iban:
        iban = iban.replace(" ", "").upper()
        moroccan = iban.startswith("MA") and len(iban) == MOROCCAN_IBAN_LENGTH
        return iban[4:] if moroccan else iban
    other = scope.text(f"{path}/Id/Othr/Id")
    if other:
        return other
    raise MappingError(path, "missing: no IBAN and no Othr/Id")


def occurred_at(scope: Scope) -> datetime:
    """When the payment was accepted or the message created, in UTC (no offset: UTC)."""
    text = scope.text("AccptncDtTm") or scope.text("CreDtTm") or ""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise MappingError("GrpHdr/CreDtTm", f"{text[:40]!r} is not an ISO date-time") from None
    if moment.utcoffset() is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def remittance(scope: Scope) -> tuple[str, ...]:
    """The unstructured remittance lines (``RmtInf/Ustrd``) of the transaction itself."""
    return tuple(scope.texts("RmtInf/Ustrd"))


def remittance_info(lines: tuple[str, ...]) -> str | None:
    """What ``PaymentInitiated.remittance_info`` carries: the lines joined by a space, cut at
    140 characters (one ``Max140Text``, as ISO 20022 writes it back out); None without any."""
    text = " ".join(line for line in lines if line)
    return text[:MAX_REMITTANCE_CHARS] or None
