"""A bank's net debit cap and prefunded liquidity: the interbank limit check, pure.

A bank's *position* in a currency is what it owes the other banks net, in integer minor
units: positive when it owes, negative when it is owed. Every payment it sends raises it,
every payment it receives lowers it, a settled window lowers it by what was settled.

The check (:func:`check_outgoing`) runs on anything that moves money out of a bank: a
payment, a capture, a refund it pays. It refuses when the bank's *exposure* after the
movement would exceed either limit::

    exposure = position + holds counted against it + amount

- **Holds count** against the position, as they count against a customer's available
  balance: a hold is money the bank has promised to pay, and a capture of it must not be
  refused for lack of room. So the room is taken when the hold is made; a capture of that
  hold passes ``released_hold_minor`` (the part of the holds it turns into a payment) and
  needs no new room.
- **Money coming in raises headroom only once it is posted**: ``position_minor`` is the
  posted position. A payment the bank is about to receive, or one decided but not yet
  written, does not count: the check may only ever be too strict, never too lenient.

The refusal carries an ISO 20022 status reason from ExternalStatusReason1Code:

============ ======================================================= =====================
limit        code (name: definition)                                 why this code
============ ======================================================= =====================
net debit    ``AM23`` AmountExceedsSettlementLimit: "Transaction      the cap is exactly a
cap          amount exceeds settlement limit"                        settlement limit
liquidity    ``AM04`` InsufficientFunds: "Amount of funds available  the bank has not
             to cover specified message amount is insufficient"      deposited enough
============ ======================================================= =====================

The liquidity is checked first, so a movement beyond both is refused with ``AM04``:
money not deposited is the harder fact (Mojaloop's central ledger checks in the same
order, its error 4001 before 4200). Depositing more then shows whether the cap binds.

A withdrawal of liquidity (``FundsOut``) is refused with ``AM04`` when it would leave less
liquidity than the bank's exposure (:func:`check_funds_out`).

Threshold alerts (:func:`crossing`): a bank chooses a percentage of its cap; it is told
once when its share used rises to it or above, and the alert re-arms only when the share
falls back below. Shares compare exactly, in integers (never a rounded percentage).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from engine.money import MAX_AMOUNT_MINOR, format_minor, is_known_currency

CAP_EXCEEDED = "AM23"  # AmountExceedsSettlementLimit
INSUFFICIENT_LIQUIDITY = "AM04"  # InsufficientFunds
MAX_LIMIT_MINOR = MAX_AMOUNT_MINOR * 1_000  # a cap or a deposit: far below int64 still
BASIS_POINTS = 10_000  # the gauge's unit: 10 000 is 100 % of the cap


@dataclass(frozen=True)
class BankLimits:
    """One bank's limits in one currency: its net debit cap and the liquidity it deposited."""

    net_debit_cap_minor: int
    liquidity_minor: int

    def __post_init__(self) -> None:
        _check_bounded("net debit cap", self.net_debit_cap_minor)
        _check_bounded("liquidity", self.liquidity_minor)


@dataclass(frozen=True)
class Exposure:
    """One bank's posted position and the holds counted against it, in one currency."""

    bank: str
    currency: str
    position_minor: int
    held_minor: int = 0

    def __post_init__(self) -> None:
        if not is_known_currency(self.currency):
            raise ValueError(f"currency {self.currency!r} is not one Sakk settles")
        if abs(self.position_minor) > MAX_LIMIT_MINOR:
            raise ValueError(f"position {self.position_minor} is beyond any limit")
        _check_bounded("held amount", self.held_minor)

    @property
    def total_minor(self) -> int:
        """What counts against the limits now: the position plus the holds."""
        return self.position_minor + self.held_minor


@dataclass(frozen=True)
class Allowed:
    """The movement fits both limits; ``exposure_minor`` is the bank's exposure after it."""

    exposure_minor: int
    headroom_minor: int  # how much more could go out after it, under the binding limit


@dataclass(frozen=True)
class Refused:
    """The movement would take the bank beyond a limit; nothing of it may be written."""

    reason_code: str
    limit: Literal["net_debit_cap", "liquidity"]
    exceeded_by_minor: int
    message: str


def check_outgoing(
    exposure: Exposure, limits: BankLimits, amount_minor: int, released_hold_minor: int = 0
) -> Allowed | Refused:
    """Whether ``amount_minor`` may leave the bank, with the reason when it may not.

    ``released_hold_minor``: the part of the bank's holds this movement consumes (a
    capture of its own hold), taken off the holds before the amount is added. An
    authorisation is checked the same way, its hold being the amount: the caller then
    adds it to the holds rather than to the position. A movement exactly at a limit
    passes; one minor unit more is refused.
    """
    if not 0 < amount_minor <= MAX_AMOUNT_MINOR:
        raise ValueError(f"amount {amount_minor}: expected 1..{MAX_AMOUNT_MINOR}")
    if not 0 <= released_hold_minor <= exposure.held_minor:
        raise ValueError(f"released hold {released_hold_minor}: expected 0..{exposure.held_minor}")
    after = exposure.total_minor - released_hold_minor + amount_minor
    if after > limits.liquidity_minor:
        return _refusal(exposure, "liquidity", limits.liquidity_minor, after, amount_minor)
    if after > limits.net_debit_cap_minor:
        return _refusal(exposure, "net_debit_cap", limits.net_debit_cap_minor, after, amount_minor)
    binding = min(limits.net_debit_cap_minor, limits.liquidity_minor)
    return Allowed(exposure_minor=after, headroom_minor=binding - after)


def _refusal(
    exposure: Exposure,
    limit: Literal["net_debit_cap", "liquidity"],
    limit_minor: int,
    after_minor: int,
    amount_minor: int,
) -> Refused:
    cur = exposure.currency
    if limit == "liquidity":
        code, name = INSUFFICIENT_LIQUIDITY, "prefunded liquidity"
    else:
        code, name = CAP_EXCEEDED, "net debit cap"
    message = (
        f"bank {exposure.bank}: sending {format_minor(amount_minor, cur)} would take its "
        f"position and holds to {format_minor(after_minor, cur)}, over its {name} of "
        f"{format_minor(limit_minor, cur)} by {format_minor(after_minor - limit_minor, cur)}"
    )
    return Refused(code, limit, after_minor - limit_minor, message)


def check_funds_out(exposure: Exposure, limits: BankLimits, amount_minor: int) -> Allowed | Refused:
    """Whether the bank may withdraw ``amount_minor`` of its liquidity (a ``FundsOut``).

    Refused (``AM04``) when the liquidity left would be less than the bank's exposure:
    a withdrawal may never leave a bank owing more than it has deposited. Headroom is
    then measured against the liquidity left and the cap, as for a payment.
    """
    if not 0 < amount_minor <= MAX_LIMIT_MINOR:
        raise ValueError(f"amount {amount_minor}: expected 1..{MAX_LIMIT_MINOR}")
    left = limits.liquidity_minor - amount_minor
    floor = max(exposure.total_minor, 0)
    if left >= floor:
        binding = min(limits.net_debit_cap_minor, left)
        headroom = max(binding - exposure.total_minor, 0)
        return Allowed(exposure_minor=exposure.total_minor, headroom_minor=headroom)
    cur = exposure.currency
    message = (
        f"bank {exposure.bank}: withdrawing {format_minor(amount_minor, cur)} would leave "
        f"{format_minor(left, cur)} of liquidity, below its position and holds of "
        f"{format_minor(floor, cur)}"
    )
    return Refused(INSUFFICIENT_LIQUIDITY, "liquidity", floor - left, message)


def _check_bounded(name: str, value: int) -> None:
    if not 0 <= value <= MAX_LIMIT_MINOR:
        raise ValueError(f"{name} {value}: expected 0..{MAX_LIMIT_MINOR} minor units")


# -- threshold alerts ------------------------------------------------------------------


@dataclass(frozen=True)
class Share:
    """How much of its cap a bank uses: its exposure against its cap, kept as the pair."""

    used_minor: int
    cap_minor: int

    def __post_init__(self) -> None:
        _check_bounded("net debit cap", self.cap_minor)

    def at_least(self, percent: int) -> bool:
        """``used / cap >= percent / 100``, exactly; a cap of zero is reached by any debt."""
        if self.cap_minor == 0:
            return self.used_minor > 0
        return self.used_minor * 100 >= percent * self.cap_minor

    @property
    def basis_points(self) -> int:
        """The gauge: share used in basis points, floored, 0 when the bank owes nothing."""
        if self.used_minor <= 0:
            return 0
        if self.cap_minor == 0:
            return BASIS_POINTS
        return self.used_minor * BASIS_POINTS // self.cap_minor


class Crossing(StrEnum):
    """What a change of share does to a bank's alert."""

    NONE = "none"  # same side of the threshold as before: nothing to say
    REACHED = "reached"  # rose to the threshold or above: tell the bank, once
    REARMED = "rearmed"  # fell back below: the next rise alerts again


MIN_ALERT_PERCENT, MAX_ALERT_PERCENT = 1, 100


def crossing(previous: Share, new: Share, alert_percent: int) -> Crossing:
    """Whether going from ``previous`` to ``new`` crosses the bank's alert percentage.

    Stateless: "once per crossing" follows from comparing each change with the one
    before it, in the order the bank's position row is written (one writer at a time per
    bank and currency). Each share carries its own cap, so a cap lowered by an operator
    can itself make a crossing.
    """
    if not MIN_ALERT_PERCENT <= alert_percent <= MAX_ALERT_PERCENT:
        raise ValueError(
            f"alert percentage {alert_percent}: expected {MIN_ALERT_PERCENT}..{MAX_ALERT_PERCENT}"
        )
    was, now = previous.at_least(alert_percent), new.at_least(alert_percent)
    if now and not was:
        return Crossing.REACHED
    if was and not now:
        return Crossing.REARMED
    return Crossing.NONE


def alerts_in_batch(start: Share, changes: Sequence[Share], alert_percent: int) -> bool:
    """Whether a batch's changes to one bank's share owe it an alert: at most one per batch.

    A share that rises to the threshold, falls back and rises again within one batch has
    crossed, and the bank is told once, when the batch commits.
    """
    previous, reached = start, False
    for share in changes:
        reached = reached or crossing(previous, share, alert_percent) is Crossing.REACHED
        previous = share
    return reached


# -- operator changes and the positions view -----------------------------------------------


@dataclass(frozen=True)
class CapChange:
    """An operator's new cap for a bank, as it will be recorded, and what it means now."""

    bank: str
    currency: str
    old_cap_minor: int
    new_cap_minor: int
    warning: str | None  # set when the bank is already beyond the new cap


def check_cap_change(exposure: Exposure, old_cap_minor: int, new_cap_minor: int) -> CapChange:
    """Validate a cap change (ValueError when out of bounds or not a change).

    A cap lowered below the bank's exposure is allowed, since an operator may need to stop
    a bank at once, but the change says so: every outgoing movement is refused until the
    position falls back under it.
    """
    _check_bounded("net debit cap", new_cap_minor)
    if new_cap_minor == old_cap_minor:
        raise ValueError(f"bank {exposure.bank} {exposure.currency}: the cap is already that")
    warning = None
    if exposure.total_minor > new_cap_minor:
        cur = exposure.currency
        warning = (
            f"bank {exposure.bank} already has {format_minor(exposure.total_minor, cur)} of "
            f"position and holds, over the new cap of {format_minor(new_cap_minor, cur)}: "
            f"everything it sends is refused until that falls"
        )
    return CapChange(exposure.bank, exposure.currency, old_cap_minor, new_cap_minor, warning)


@dataclass(frozen=True)
class PositionView:
    """One line of ``sakk settlement positions``: what a bank uses of what it may use."""

    bank: str
    currency: str
    position_minor: int
    held_minor: int
    net_debit_cap_minor: int
    liquidity_minor: int
    share_used_bps: int  # of the cap, as the gauge shows it
    alert_percent: int
    headroom_minor: int  # what it could still send, under the lower limit

    @classmethod
    def of(cls, exposure: Exposure, limits: BankLimits, alert_percent: int) -> PositionView:
        binding = min(limits.net_debit_cap_minor, limits.liquidity_minor)
        share = Share(exposure.total_minor, limits.net_debit_cap_minor)
        return cls(
            exposure.bank, exposure.currency, exposure.position_minor, exposure.held_minor,
            limits.net_debit_cap_minor, limits.liquidity_minor, share.basis_points,
            alert_percent, max(binding - exposure.total_minor, 0),
        )  # fmt: skip
