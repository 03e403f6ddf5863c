"""Banks as ISO 20022 names them: by BIC (``banks.bic`` in reference data) or member id.

An agent (``DbtrAgt``, ``CdtrAgt``) names its bank by ``FinInstnId/BICFI`` or by its
clearing member id ``FinInstnId/ClrSysMmbId/MmbId``, which on this switch is the bank
code itself (``007``). A BIC is matched on its first 8 characters, so a branch BIC
(``BCMAMAMCXXX``) finds its bank.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import Connection, select

from engine.ledger.models import Bank, table_of


@dataclass(frozen=True)
class BankDirectory:
    """Bank codes by BIC8, and BIC by bank code, from the ledger's reference data."""

    by_bic8: Mapping[str, str]
    codes: frozenset[str]
    bic_of: Mapping[str, str]

    @classmethod
    def load(cls, conn: Connection) -> BankDirectory:
        banks = table_of(Bank)
        rows = conn.execute(select(banks.c.code, banks.c.bic)).all()
        return cls.from_rows([(r.code, r.bic) for r in rows])

    @classmethod
    def from_rows(cls, rows: list[tuple[str, str | None]]) -> BankDirectory:
        bics = {code: bic.strip().upper() for code, bic in rows if bic}
        return cls(
            by_bic8={bic[:8]: code for code, bic in bics.items()},
            codes=frozenset(code for code, _ in rows),
            bic_of=bics,
        )

    def by_bic(self, bic: str) -> str | None:
        return self.by_bic8.get(bic.strip().upper()[:8])

    def by_member_id(self, member_id: str) -> str | None:
        code = member_id.strip()
        return code if code in self.codes else None
