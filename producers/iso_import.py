"""``sakk iso import``: an ISO 20022 file's transactions published as signed PaymentInitiated.

Publishing goes through :class:`producers.publisher.PaymentPublisher`, exactly as
``sakk publish`` does: each payment checked against the schema, keyed by the payer's
account and signed as its payer bank, with the key file ``SAKK_SIGNING_KEY_FILE`` (one
bank's key) or the ``signers`` given. A transaction the key cannot sign is reported like
any other bad transaction.

Without ``atomic`` the good transactions go and the bad ones are reported; with it, one
bad transaction stops the whole file before anything is sent.

``RmtInf/Ustrd`` (remittance information) travels in ``PaymentInitiated.remittance_info``
(140 characters); the report keeps every line (``remittance`` per published payment). It
is never logged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.config import Settings
from engine.ids import switch_id_of
from engine.iso import safe_xml
from engine.iso.directory import BankDirectory
from engine.iso.reader import MappedTransaction, ParsedMessage, TransactionIssue, read_message
from engine.serialization import AvroCodec
from producers.exceptions import InvalidPaymentError, PaymentSigningError
from producers.publisher import PaymentPublisher
from producers.signing import Signers

log = logging.getLogger(__name__)

MAX_REPORTED_ISSUES = 1_000  # beyond this, bad transactions are counted, not described


@dataclass(frozen=True)
class Published:
    index: int
    bank_reference: str
    payment_id: str  # the switch's id (engine.ids): what `sakk trace` takes
    remittance: tuple[str, ...]


@dataclass
class ImportReport:
    """What became of each transaction of one file."""

    path: str
    message: str
    message_id: str
    transactions: int
    atomic: bool
    published: list[Published] = field(default_factory=list)
    issues: list[TransactionIssue] = field(default_factory=list)
    refused: int = 0  # bad transactions (one with several issues counts once)
    unreported: int = 0  # issues beyond MAX_REPORTED_ISSUES: counted, not described
    _refused_indexes: set[int] = field(default_factory=set, repr=False)

    def add_issue(self, issue: TransactionIssue) -> None:
        if issue.index not in self._refused_indexes:
            self._refused_indexes.add(issue.index)
            self.refused += 1
        if len(self.issues) < MAX_REPORTED_ISSUES:
            self.issues.append(issue)
        else:
            self.unreported += 1

    @property
    def ok(self) -> bool:
        return self.refused == 0

    def summary(self) -> str:
        held = " (--atomic: nothing published)" if self.atomic and self.refused else ""
        lines = [
            f"{self.path}: {self.message} {self.message_id}, {self.transactions} transactions, "
            f"{len(self.published)} published, {self.refused} refused{held}",
            *(f"  {issue}" for issue in self.issues),
        ]
        if self.unreported:
            lines.append(f"  ... and {self.unreported} more problems")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON data, remittance information included (for the bank)."""
        return {
            "path": self.path, "message": self.message, "message_id": self.message_id,
            "transactions": self.transactions, "atomic": self.atomic, "refused": self.refused,
            "unreported_issues": self.unreported,
            "published": [vars(p) | {"remittance": list(p.remittance)} for p in self.published],
            "issues": [vars(i) | {"text": str(i)} for i in self.issues],
        }  # fmt: skip


def import_file(
    settings: Settings,
    directory: BankDirectory,
    path: Path,
    atomic: bool = False,
    signers: Signers | None = None,
    codec: AvroCodec | None = None,
) -> ImportReport:
    """Publish the good transactions of ``path``; raises IsoError if the file is bad as a whole.

    ``directory``: the banks' BICs and codes, from the file the switch publishes
    (:func:`engine.iso.directory.read_file`): a bank's tool never reads the switch's
    ledger. Raises :class:`~producers.exceptions.PaymentDeliveryError` when the broker
    does not acknowledge what was sent: a delivery problem is not a bad transaction.
    """
    parsed = read_message(safe_xml.read_file(path), directory)
    report = ImportReport(
        str(path), parsed.definition.identifier, parsed.message_id, parsed.count, atomic
    )
    for issue in parsed.issues:
        report.add_issue(issue)
    publisher = PaymentPublisher(settings, codec, signers=signers)
    if atomic:
        _precheck(publisher, parsed, report, signers)
        if not report.ok:
            return report
    with publisher:
        for transaction in parsed.transactions:
            _publish_one(publisher, transaction, report)
    log.info("%s: %d published, %d refused", path.name, len(report.published), report.refused)
    return report


def _publish_one(
    publisher: PaymentPublisher, transaction: MappedTransaction, report: ImportReport
) -> None:
    payment = transaction.payment
    try:
        publisher.publish(payment)
    except InvalidPaymentError as exc:
        report.add_issue(_issue(transaction, exc.field, exc.problem))
    except PaymentSigningError as exc:
        report.add_issue(_issue(transaction, "DbtrAgt", str(exc)))
    else:
        report.published.append(
            Published(
                transaction.index, payment["bank_reference"], switch_id_of(payment),
                transaction.remittance,
            )
        )  # fmt: skip


def _precheck(
    publisher: PaymentPublisher,
    parsed: ParsedMessage,
    report: ImportReport,
    signers: Signers | None,
) -> None:
    """For ``--atomic``: find, before sending anything, what ``publish`` would refuse.

    A key file is one bank's key: every payer bank must be the key's.
    """
    banks = publisher.signing_banks
    for transaction in parsed.transactions:
        payment = transaction.payment
        try:
            publisher.encode(payment)
        except InvalidPaymentError as exc:
            report.add_issue(_issue(transaction, exc.field, exc.problem))
            continue
        if payment["payer_bank"] not in banks:
            held = ", ".join(sorted(banks))
            report.add_issue(
                _issue(transaction, "DbtrAgt", f"signing key held for bank {held} only")
            )


def _issue(transaction: MappedTransaction, element: str, reason: str) -> TransactionIssue:
    reference = transaction.payment["bank_reference"]
    return TransactionIssue(transaction.index, transaction.label, reference, element, reason)
