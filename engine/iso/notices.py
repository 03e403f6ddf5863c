"""Notifications as ISO 20022 documents, for the banks that chose them in reference data.

``banks.notification_format`` is ``json`` (also when null: the default) or ``pacs.002``. A
bank that chose ``pacs.002`` is told every payment's answer and every step as a
``pacs.002.001.10`` status report, except a step the catalog gives no status (a RETURN),
which is a ``pacs.004.001.09`` payment return (``docs/iso20022.md`` has the table). The
document's ``MsgId`` is the notification id without dashes, the same on every attempt, so
the bank deduplicates on it as a JSON receiver does on ``notification_id``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from engine.domain.steps import STEPS, StepKind
from engine.iso.build import compact_id
from engine.iso.pacs002 import build_pacs002
from engine.iso.pacs004 import build_pacs004
from engine.ledger.models import Bank, table_of

JSON, PACS_002 = "json", "pacs.002"
XML_CONTENT_TYPE = "application/xml"


@dataclass(frozen=True)
class BankProfiles:
    """Each bank's notification format and BIC, as reference data has them."""

    formats: Mapping[str, str] = field(default_factory=dict)
    bics: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, conn: Connection) -> BankProfiles:
        banks = table_of(Bank)
        rows = conn.execute(select(banks.c.code, banks.c.bic, banks.c.notification_format)).all()
        return cls(
            {r.code: r.notification_format or JSON for r in rows},
            {r.code: r.bic.strip().upper() for r in rows if r.bic},
        )

    def wants_iso(self, bank: str) -> bool:
        return self.formats.get(bank, JSON) == PACS_002


def iso_notification(
    notification_id: str,
    outcome: str,
    payload: Mapping[str, Any],
    recipient_bank: str,
    created_at: datetime,
    bics: Mapping[str, str],
) -> bytes:
    """The ISO 20022 document that tells ``recipient_bank`` of ``outcome``."""
    msg_id = compact_id(notification_id)
    if outcome in STEPS and STEPS[StepKind(outcome)].iso_status is None:
        return build_pacs004(payload, created_at, recipient_bank, bics, msg_id)
    return build_pacs002(outcome, payload, created_at, recipient_bank, bics, msg_id)
