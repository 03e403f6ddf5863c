"""The switch's id of a bank's id: every bank names its events, payments and steps in its
own namespace, so no bank can make another's message a duplicate, a reused id or a
conflict.

A bank supplies ids (an event's, a payment's); the switch keeps each as
``f"{bank}:{id}"``, the bank being the one that signed the message (the gate has
verified it before any id is read). Bank codes are short alphanumeric tokens, so the
first ``:`` ends the bank's code: ``A:x`` and ``B:x`` are two ids, whatever ``x`` is.
A bank's own part may not contain ``:`` itself; the one exception is an id that names
something the switch told the bank of (a step names its payment by the qualified id its
notification carried), which is taken as it is. Whether that bank may then act on it is
for the rules that read it (settlement's "who may ask").

Ids written before the switch qualified them (no ``:`` in them) stay as they were: the
hash chain covers them, and they never collide with a qualified one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SEPARATOR = ":"
MAX_ID_CHARS = 64  # a bank's own part of an id
BANK_CODE_MAX_CHARS = 8  # banks.code
SWITCH_ID_MAX_CHARS = BANK_CODE_MAX_CHARS + len(SEPARATOR) + MAX_ID_CHARS  # ledger id columns
# What a bank may send, as the validator checks it and a bank's conformance check tells it:
MAX_REFERENCE_CHARS = 35  # a bank's reference: ISO 20022 Max35Text
MAX_ACCOUNT_CHARS = 34  # an account number: the IBAN's length limit


class MalformedIdError(ValueError):
    """A bank-supplied id the switch cannot take: empty, too long, or not the bank's own."""


def qualified(bank: str, own_id: str) -> str:
    """The switch's id of ``bank``'s id ``own_id`` (no checks: see :func:`qualify_own`)."""
    return f"{bank}{SEPARATOR}{own_id}"


def qualify_own(field: str, bank: str, value: object) -> str:
    """``bank``'s own id ``value`` in its namespace; it may not claim another's."""
    text = _checked(field, value)
    if SEPARATOR in text:
        raise MalformedIdError(f"{field} may not contain {SEPARATOR!r}")
    return qualified(bank, text)


def qualify_named(field: str, bank: str, value: object) -> str:
    """An id naming something: ``bank``'s own when unqualified, else the switch's id it
    was told, taken as it is once its form is checked."""
    text = str(value)
    if SEPARATOR not in text:
        return qualify_own(field, bank, text)
    owner, _, own = text.partition(SEPARATOR)
    if not (0 < len(owner) <= BANK_CODE_MAX_CHARS and owner.isascii() and owner.isalnum()):
        raise MalformedIdError(f"{field} names no bank before {SEPARATOR!r}")
    _checked(field, own)
    if SEPARATOR in own:
        raise MalformedIdError(f"{field} has more than one {SEPARATOR!r}")
    return text


def own_part(switch_id: str) -> str:
    """What the bank itself called it: the id after its bank's code (a legacy id as is)."""
    return switch_id.partition(SEPARATOR)[2] if SEPARATOR in switch_id else switch_id


def bank_of(switch_id: str) -> str | None:
    """The bank whose namespace ``switch_id`` is in; None for an id from before namespaces."""
    return switch_id.partition(SEPARATOR)[0] if SEPARATOR in switch_id else None


def _checked(field: str, value: object) -> str:
    text = str(value)
    if not 0 < len(text) <= MAX_ID_CHARS:
        raise MalformedIdError(f"{field} must be 1 to {MAX_ID_CHARS} characters, got {len(text)}")
    return text


def switch_id_of(record: Mapping[str, Any], field: str = "payment_id") -> str:
    """The switch's id of ``field`` of a bank's event, as the gate makes it: in the namespace
    of the bank that sends it (a step's sender, a payment's payer); an id that names a
    payment by the switch's id is that id. For tools that predict what the ledger holds."""
    value = str(record[field])
    if SEPARATOR in value and field != "event_id":
        return value
    return qualified(str(record.get("sender_bank") or record["payer_bank"]), value)
