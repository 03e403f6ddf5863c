"""The banks' positions as settlement's decisions see them: the interbank limit check.

A batch reads the position rows of the banks it may move (``engine.ledger.positions``),
and every decision that moves money between two banks checks the paying bank against
its limits (:func:`engine.risk.limits.check_outgoing`) and says how it moves each bank's
row (:class:`PositionMoved` rows, summed per bank and written with one guarded update).

What a decision counts against a bank, in the position's sign (+ the bank owes more):

=================== ============================= ===============================
step                the paying bank               the other bank
=================== ============================= ===============================
payment (SALE)      posted + amount (checked)     posted - amount
authorization       holds + amount (checked)      nothing yet
capture of ``a``    posted + a, holds - released  posted - a
void, expiry        holds - what was left          nothing
refund, return      the payee's bank: posted + a  the payer's bank: posted - a
                    (checked)
=================== ============================= ===============================

Only interbank movements count (a payment within one bank never reaches the settlement
accounts) and only the amount (a fee stays inside the payer's bank). A decision later in
the batch sees what the earlier ones added to a bank's exposure, never what they took
off: money a bank receives raises its headroom once it is posted, that is once the batch
commits. The bank's own deposits are the exception (:meth:`BankBook.absorb`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection

from engine.ledger.positions import PAYMENTS, AlertTo, BankRow, PositionMoved, read_banks
from engine.risk.limits import BankLimits, Refused, check_funds_out, check_outgoing


@dataclass
class BankBook:
    """The batch's banks' rows, as the decisions so far leave them."""

    rows: dict[tuple[str, str], BankRow] = field(default_factory=dict)
    alert_to: AlertTo | None = None

    @classmethod
    def load(
        cls, conn: Connection, keys: Iterable[tuple[str, str]], alert_to: AlertTo | None
    ) -> BankBook:
        return cls(read_banks(conn, keys), alert_to)

    def _limits(self, bank: str, currency: str) -> tuple[BankRow, BankLimits] | None:
        row = self.rows.get((bank, currency))
        if row is None or row.cap_minor is None:
            return None
        return row, BankLimits(row.cap_minor, max(row.liquidity_minor, 0))

    def check_outgoing(self, bank: str, currency: str, amount_minor: int) -> Refused | None:
        """Why ``bank`` may not send ``amount_minor`` more; None when it may (or is unbounded)."""
        bounded = self._limits(bank, currency)
        if bounded is None:
            return None
        row, limits = bounded
        verdict = check_outgoing(row.exposure, limits, amount_minor)
        return verdict if isinstance(verdict, Refused) else None

    def check_funds_out(self, bank: str, currency: str, amount_minor: int) -> Refused | None:
        """Why ``bank`` may not withdraw ``amount_minor``; None when it may."""
        row = self.rows.get((bank, currency))
        if row is None:
            return None
        cap = row.cap_minor if row.cap_minor is not None else max(row.liquidity_minor, 0)
        limits = BankLimits(cap, max(row.liquidity_minor, 0))
        verdict = check_funds_out(row.exposure, limits, amount_minor)
        return verdict if isinstance(verdict, Refused) else None

    def moved(
        self, bank: str, currency: str, at: datetime, posted: int = 0, holds: int = 0,
        liquidity: int = 0, ref: str | None = None, cause: str = PAYMENTS,
    ) -> PositionMoved:  # fmt: skip
        """The row that moves ``bank``'s position, with the limits its guard checks and
        what the journal names as its cause (``ref``: the payment or movement id)."""
        row = self.rows.get((bank, currency))
        if row is None:
            return PositionMoved(
                bank, currency, posted, holds, liquidity, None, 0, None, at, None, cause, ref
            )
        return PositionMoved(
            bank, currency, posted, holds, liquidity, row.cap_minor, row.settled_minor,
            row.alert_percent, at, self.alert_to, cause, ref, row.version,
        )  # fmt: skip

    def absorb(self, moved: PositionMoved) -> None:
        """What a decision added to a bank's exposure, and what it did to its liquidity.

        A bank's own deposit (``FundsIn``) counts for the decisions after it in the batch,
        as a withdrawal does: it is posted in the same transaction and the guard checks
        the batch's net liquidity, so a deposit and the payments it makes room for end the
        same way however they are batched (a replay's batches are not the live ones).
        """
        row = self.rows.get((moved.bank_code, moved.currency))
        if row is None:
            return
        if moved.posted_minor + moved.holds_minor >= 0:
            row.posted_minor += moved.posted_minor
            row.holds_minor += moved.holds_minor
        row.liquidity_minor += moved.liquidity_minor


def interbank(payer_bank: str, payee_bank: str) -> bool:
    return payer_bank != payee_bank
