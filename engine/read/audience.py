"""Who asks: an operator, an auditor, or one bank; what each may see.

=========  ====================================  ===================================
audience   payments visible                      account numbers
=========  ====================================  ===================================
operator   every payment                         last 4 digits (``engine.masking``)
auditor    every payment                         whole: auditors check them
bank       where it is the payer or payee bank   its own side whole, the other side's
                                                 last 4 digits
=========  ====================================  ===================================

A bank asking for another bank's payment gets exactly what it gets for a payment
that does not exist (:class:`~engine.read.exceptions.NotVisibleError` with the same
words), so nothing tells it the payment is there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from engine.masking import mask_account
from engine.read.exceptions import ReadError

BANK_CODE = re.compile(r"^[0-9A-Za-z]{1,8}$")  # payments.payer_bank is String(8)


class Role(StrEnum):
    OPERATOR = "operator"
    AUDITOR = "auditor"
    BANK = "bank"


@dataclass(frozen=True)
class Audience:
    role: Role
    bank_code: str | None = None  # the one bank a bank user is bound to

    def __post_init__(self) -> None:
        if (self.role is Role.BANK) != (self.bank_code is not None):
            raise ReadError("a bank audience names exactly one bank; other audiences none")
        if self.bank_code is not None and not BANK_CODE.match(self.bank_code):
            raise ReadError(f"bank code {self.bank_code!r}: expected 1 to 8 letters or digits")

    @classmethod
    def operator(cls) -> Audience:
        return cls(Role.OPERATOR)

    @classmethod
    def auditor(cls) -> Audience:
        return cls(Role.AUDITOR)

    @classmethod
    def bank(cls, code: str) -> Audience:
        return cls(Role.BANK, code)

    @classmethod
    def parse(cls, text: str) -> Audience:
        """``operator``, ``auditor`` or ``bank:CODE`` (what ``--as`` takes)."""
        role, _, code = text.partition(":")
        if role == Role.BANK.value and code:
            return cls.bank(code)
        if role in (Role.OPERATOR.value, Role.AUDITOR.value) and not code:
            return cls(Role(role))
        raise ReadError(f"audience {text!r}: expected operator, auditor or bank:CODE")

    @property
    def label(self) -> str:
        return f"bank:{self.bank_code}" if self.bank_code else self.role.value

    def sees_every_bank(self) -> bool:
        return self.role is not Role.BANK

    def may_see(self, payer_bank: str, payee_bank: str) -> bool:
        """True when this audience may know a payment between these banks exists."""
        return self.sees_every_bank() or self.bank_code in (payer_bank, payee_bank)

    def account(self, number: str | None, bank: str) -> str | None:
        """An account number of ``bank`` as this audience may see it."""
        if number is None:
            return None
        if self.role is Role.AUDITOR or (self.role is Role.BANK and bank == self.bank_code):
            return number
        return mask_account(number)

    def unmasked(self) -> bool:
        """True when this audience sees every account number whole."""
        return self.role is Role.AUDITOR
