"""Building outbound messages with lxml's element maker, each checked against its XSD.

No message is assembled from strings: elements are built as a tree in the message's
namespace, and :func:`serialize` refuses (ValueError) any message Sakk builds that breaks
its definition, so a bug shows up here rather than at a bank.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, date, datetime

from lxml import etree
from lxml.builder import ElementMaker

from engine.ids import own_part
from engine.iso.schemas import Definition, check_generated

MAX35 = 35


def maker(definition: Definition) -> ElementMaker:
    """Elements in ``definition``'s namespace, as the default namespace."""
    return ElementMaker(namespace=definition.namespace, nsmap={None: definition.namespace})


def serialize(root: etree._Element, definition: Definition) -> bytes:
    """UTF-8 bytes of ``root`` with an XML declaration, once it validates."""
    check_generated(root, definition)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def iso_datetime(moment: datetime) -> str:
    """UTC, to the millisecond, with ``Z``: what ISODateTime takes everywhere."""
    utc = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def iso_date(day: date) -> str:
    return day.isoformat()


def message_id(prefix: str, *parts: str) -> str:
    """A Max35Text id derived from ``parts``: the same message gets the same id again."""
    digest = hashlib.sha256("/".join(parts).encode()).hexdigest()
    return (prefix + digest)[:MAX35]


def compact_id(switch_id: str) -> str:
    """A Sakk id in a Max35Text field: the bank's own part of it (engine.ids; the payer's
    bank is named beside it, as DbtrAgt), a UUID without its dashes (32 characters)."""
    return own_part(switch_id).replace("-", "")[:MAX35]


def financial_institution(
    e: ElementMaker, bank_code: str, bics: Mapping[str, str]
) -> etree._Element:
    """``FinInstnId`` of a bank: its BIC when reference data has one, else its member id."""
    bic = bics.get(bank_code)
    if bic:
        return e.FinInstnId(e.BICFI(bic))
    return e.FinInstnId(e.ClrSysMmbId(e.MmbId(bank_code)))
