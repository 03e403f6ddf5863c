"""Personal data kept out of what operators read: account numbers cut to their last 4 digits.

Holders' names and full account numbers never reach logs, terminals or reports made
for operators. Events carry accounts in fields named ``*_account``; free text (a
decode error, a database message quoting a key) may quote one anywhere, so any run of
``MIN_ACCOUNT_DIGITS`` digits or more is treated as one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

VISIBLE_DIGITS = 4
MIN_ACCOUNT_DIGITS = 10  # Moroccan RIBs have 24; dates, amounts and offsets stay readable
HIDDEN = "****"
_ACCOUNT_RUN = re.compile(rf"\d{{{MIN_ACCOUNT_DIGITS},}}")
_NAME_FIELDS = ("holder", "holder_name", "name", "payer_name", "payee_name")


def mask_account(number: str) -> str:
    """``****3456``: the last digits identify the account to its bank, not to anyone else."""
    if len(number) <= VISIBLE_DIGITS:
        return HIDDEN
    return HIDDEN + number[-VISIBLE_DIGITS:]


def mask_text(text: str) -> str:
    """Free text with every account-like digit run masked."""
    return _ACCOUNT_RUN.sub(lambda m: mask_account(m.group()), text)


def is_account_field(name: str) -> bool:
    return name == "account" or name.endswith("_account") or name.endswith("account_number")


def is_name_field(name: str) -> bool:
    return name in _NAME_FIELDS or name.endswith("_holder")


def mask_value(name: str, value: Any) -> Any:
    """A field's value fit to show: accounts cut, names hidden, text scanned, nesting kept."""
    if value is None:
        return None
    if is_name_field(name):
        return HIDDEN
    if is_account_field(name):
        return mask_account(str(value))
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, Mapping):
        return mask_record(value)
    if isinstance(value, list | tuple):
        return [mask_value(name, v) for v in value]
    return value


def mask_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """A decoded event fit to print: see :func:`mask_value`."""
    return {str(k): mask_value(str(k), v) for k, v in record.items()}


def mask_key(key: bytes | None) -> str:
    """A Kafka key fit to print: payments are keyed by the payer's account."""
    if not key:
        return ""
    try:
        text = key.decode("utf-8")
    except UnicodeDecodeError:
        return f"<{len(key)} bytes>"
    if not text.isprintable():
        return f"<{len(key)} bytes>"
    return mask_text(text)
