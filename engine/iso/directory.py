"""Banks as ISO 20022 names them: by BIC (``banks.bic`` in reference data) or member id.

An agent (``DbtrAgt``, ``CdtrAgt``) names its bank by ``FinInstnId/BICFI`` or by its
clearing member id ``FinInstnId/ClrSysMmbId/MmbId``, which on this switch is the bank
code itself (``007``). A BIC is matched on its first 8 characters, so a branch BIC
(``BCMAMAMCXXX``) finds its bank.

The switch reads it from its ledger; a bank's tools (``sakk iso import``) never reach
that ledger: they read the directory file the switch publishes (``sakk directory export
FILE``, :func:`write_file`; :func:`read_file` here), JSON of this shape::

    {"format": "sakk.bank-directory/1", "banks": [{"code": "007", "bic": "BCMAMAMC"}, ...]}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, select

from engine.iso.errors import DirectoryFileError
from engine.ledger.models import Bank, table_of

DIRECTORY_FORMAT = "sakk.bank-directory/1"
MAX_DIRECTORY_BYTES = 1_000_000  # a few thousand banks at most: anything larger is not ours
MAX_BANK_CODE_CHARS = 16
BIC_LENGTHS = (8, 11)


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
    def from_ledger(cls, engine: Engine) -> BankDirectory:
        with engine.connect() as conn:
            return cls.load(conn)

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

    def as_json(self) -> dict[str, Any]:
        """The directory file's content: every bank code, with its BIC when it has one."""
        banks = [{"code": code, "bic": self.bic_of.get(code)} for code in sorted(self.codes)]
        return {"format": DIRECTORY_FORMAT, "banks": banks}


def write_file(directory: BankDirectory, path: Path) -> None:
    """Write ``directory`` as the file banks import with (UTF-8 JSON, sorted by code)."""
    text = json.dumps(directory.as_json(), indent=2, ensure_ascii=False) + "\n"
    path.write_text(text, encoding="utf-8")


def read_file(path: Path) -> BankDirectory:
    """The directory of a file ``write_file`` wrote; DirectoryFileError saying what is wrong."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_DIRECTORY_BYTES + 1)
    except OSError as exc:
        raise DirectoryFileError(f"bank directory {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_DIRECTORY_BYTES:
        raise DirectoryFileError(f"bank directory {path}: over {MAX_DIRECTORY_BYTES} bytes")
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DirectoryFileError(f"bank directory {path}: not JSON ({exc})") from None
    if not isinstance(document, dict) or document.get("format") != DIRECTORY_FORMAT:
        raise DirectoryFileError(
            f"bank directory {path}: not a {DIRECTORY_FORMAT} file (sakk directory export)"
        )
    banks = document.get("banks")
    if not isinstance(banks, list) or not banks:
        raise DirectoryFileError(f"bank directory {path}: no banks")
    rows: list[tuple[str, str | None]] = []
    for number, bank in enumerate(banks, 1):
        code = bank.get("code") if isinstance(bank, dict) else None
        bic = bank.get("bic") if isinstance(bank, dict) else None
        if not isinstance(code, str) or not code or len(code) > MAX_BANK_CODE_CHARS:
            raise DirectoryFileError(f"bank directory {path}: bank {number} has no valid code")
        if bic is not None and (not isinstance(bic, str) or len(bic) not in BIC_LENGTHS):
            raise DirectoryFileError(f"bank directory {path}: bank {code} has an invalid BIC")
        rows.append((code, bic))
    return BankDirectory.from_rows(rows)
