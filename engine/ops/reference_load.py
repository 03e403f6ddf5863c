"""Load a reference file (``sakk accounts load``): an operator action that versions what it changes.

The file carries banks, accounts, keys, fee rules, channel limits and each bank's net debit
cap and alert percentage (``bank_limits``). Its fees, limits and caps are reference data
like any other, so a load writes them as ``sakk reference`` and ``sakk liquidity cap``
do: the table's rows, a numbered row of ``reference_versions`` per item it changes, and
one audit record (the file's SHA-256, every item's old and new value).

- **Fees and channel limits.** The first load into a ledger (no fee rule, no channel
  limit, no version of either yet) writes the tables only: they are the values in force
  for every event, before any version. A later load versions every rule it creates,
  changes or removes, in force ``SAKK_REFERENCE_NOTICE_S`` after it is announced, exactly
  as ``sakk reference fee|limit``: running stages pick it up without a restart and apply
  it to events from then on, and a replay does the same. A change that would take effect
  before one still pending for the same item is refused.
- **Caps and alert percentages.** Every cap the load creates or changes is a version (kind
  ``cap``, in force at once: settlement reads caps with each batch), the first load's
  included. A load never overwrites a cap an operator set (``sakk liquidity cap``, whose
  version names its action): if the file says otherwise for that bank and currency, the
  whole load is refused with both values. An operator's cap is a risk decision made on
  purpose (a bank stopped, a limit raised for a holiday); a file written before it, or by
  a bank, must not undo it as a side effect. To go on, put the operator's value in the
  file, or set the cap again with ``sakk liquidity cap``. With ``keep_operator_caps``
  (``--keep-operator-caps``, what a deployment that loads the same file at every start
  uses) the load goes on and leaves each such cap as the operator set it; its audit
  record lists them under ``kept``.

The liquidity a file gives a bank is its first deposit, posted once when its liquidity
account is created; later deposits are ``FundsIn`` / ``FundsOut`` events, never a load.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar

from sqlalchemy import Connection, func, select

from engine.ledger.exceptions import ReferenceDataError
from engine.ledger.models import BankLimit, ChannelLimit, FeeRule, table_of
from engine.ledger.models import ReferenceVersion as VersionRow
from engine.ledger.reference import (
    LoadReport,
    check_bank_limits,
    check_channel_limit,
    check_fee_rule,
    load_reference_data,
)
from engine.ledger.reference_versions import (
    CAP,
    FEE,
    LIMIT,
    cap_item,
    fee_item,
    limit_item,
    newest_version,
)
from engine.money import format_minor
from engine.ops.action import Plan, Refused
from engine.ops.limits import CAP_FIELDS, CapSetter, SetBankLimit, cap_setters
from engine.ops.reference import (
    FEE_FIELDS,
    LIMIT_FIELDS,
    VersionChange,
    check_committed_in_time,
    write_version,
)
from engine.times import as_utc

# An item as the audit record names it ("fee WEB/PURCHASE/MAD") -> its kind.
_KIND_OF_PREFIX = {"fee": FEE, "limit": LIMIT, "cap": CAP}


@dataclass(frozen=True)
class LoadState:
    """What a load is decided on: the ledger's fees, limits and caps, and their versions."""

    items: dict[str, Any]  # "fee WEB/PURCHASE/MAD", "limit ATM/MAD", "cap 007/MAD" -> value
    cap_setters: dict[str, CapSetter]  # cap item -> the action behind its newest version
    last_effective: dict[str, datetime]  # "fee ..."/"limit ..." -> its newest effective_from
    newest_version: int
    first_load: bool  # no fee rule, no channel limit and no version of either yet


@dataclass(frozen=True)
class LoadReferenceFile:
    """Load a reference file (banks, accounts, keys, fees, limits, caps) into the ledger."""

    name: ClassVar[str] = "reference.load"
    file_name: str
    sha256: str
    data: Mapping[str, Any]
    notice_s: int
    commit_within_s: float
    keep_operator_caps: bool = False

    def load(self, conn: Connection) -> LoadState:
        fees = [dict(f) for f in conn.execute(select(table_of(FeeRule))).mappings()]
        limits = [dict(lim) for lim in conn.execute(select(table_of(ChannelLimit))).mappings()]
        caps = [dict(c) for c in conn.execute(select(table_of(BankLimit))).mappings()]
        v = table_of(VersionRow)
        last = conn.execute(
            select(v.c.kind, v.c.item, func.max(v.c.effective_from))
            .where(v.c.kind.in_([FEE, LIMIT]))
            .group_by(v.c.kind, v.c.item)
        ).all()
        return LoadState(
            items=_items(fees, limits, caps),
            cap_setters=cap_setters(conn),
            last_effective={f"{kind} {item}": as_utc(at) for kind, item, at in last},
            newest_version=newest_version(conn),
            first_load=not fees and not limits and not last,
        )

    def decide(self, state: LoadState, at: datetime) -> Plan | Refused:
        try:
            after = _items(*_checked(self.data))
        except ReferenceDataError as exc:
            return Refused(str(exc))
        kept = _operator_caps(state, _changed(state.items, after))
        if kept and not self.keep_operator_caps:
            return Refused(_overwrite_refused(state, after, kept))
        data = _with_caps_kept(self.data, state.items, kept)
        after.update({k: state.items[k] for k in kept})
        changed = _changed(state.items, after)
        effective = at + timedelta(seconds=self.notice_s)
        late = [f"a change of {k} already takes effect at {state.last_effective[k].isoformat()}"
                for k in changed if k in state.last_effective
                and effective < state.last_effective[k]]  # fmt: skip
        if late:
            return Refused("; ".join(late) + f": load this file from then on (after {effective})")
        versions = _versions(state, after, changed, at, effective)
        old = {k: state.items.get(k) for k in changed}
        new = {"sha256": self.sha256, "changed": {k: after.get(k) for k in changed},
               "versions": [c.version for c in versions], "kept": kept}  # fmt: skip
        return Plan(f"reference file {self.file_name}"[:200], old, new, (data, versions))

    def apply(self, conn: Connection, plan: Plan, seq: int) -> LoadReport:
        data, versions = plan.changes
        report = load_reference_data(conn, data)
        report.operator_caps_kept = len(plan.new["kept"])
        for change in versions:
            write_version(conn, change, seq)
        report.versions = len(versions)
        if any(c.kind != CAP for c in versions):  # stages read these by event time
            check_committed_in_time(versions[0].announced_at, self.commit_within_s)
        return report


def _checked(
    data: Mapping[str, Any],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    fees = [check_fee_rule(f, i) for i, f in enumerate(data.get("fee_schedule", []))]
    limits = [check_channel_limit(lim, i) for i, lim in enumerate(data.get("channel_limits", []))]
    return fees, limits, check_bank_limits(data)


def _items(
    fees: list[dict[str, Any]], limits: list[dict[str, Any]], caps: list[dict[str, Any]]
) -> dict[str, Any]:
    """Fee rules, channel limits and caps by item, as the audit log shows them."""
    items = {
        f"fee {fee_item(f['channel'], f['payment_type'], f['currency'])}": {
            k: f[k] for k in FEE_FIELDS
        }
        for f in fees
    }
    for lim in limits:
        items[f"limit {limit_item(lim['channel'], lim['currency'])}"] = {
            k: lim[k] for k in LIMIT_FIELDS
        }
    for c in caps:
        items[f"cap {cap_item(c['bank_code'], c['currency'])}"] = {k: c[k] for k in CAP_FIELDS}
    return items


def _changed(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def _operator_caps(state: LoadState, changed: list[str]) -> list[str]:
    """The changed items that are caps an operator set (``cap 007/MAD``)."""
    kept = []
    for key in changed:
        kind, item = key.split(" ", 1)
        setter = state.cap_setters.get(item)
        if kind == "cap" and setter is not None and setter.action == SetBankLimit.name:
            kept.append(key)
    return kept


def _with_caps_kept(
    data: Mapping[str, Any], items: Mapping[str, Any], kept: list[str]
) -> Mapping[str, Any]:
    """The file with each kept cap as the ledger has it (the file's first deposit stays)."""
    if not kept:
        return data
    entries = {f"cap {cap_item(str(b.get('bank')), str(b.get('currency')))}": dict(b)
               for b in data.get("bank_limits", [])}  # fmt: skip
    for key in kept:
        bank, currency = key.split(" ", 1)[1].split("/")
        entry = entries.setdefault(key, {"bank": bank, "currency": currency, "liquidity_minor": 0})
        entry.update(items[key])
    return {**data, "bank_limits": list(entries.values())}


def _overwrite_refused(state: LoadState, after: Mapping[str, Any], kept: list[str]) -> str:
    """Why the load may not go on: each cap an operator set that the file would change."""
    lines = []
    for key in kept:
        item = key.split(" ", 1)[1]
        bank, currency = item.split("/")
        lines.append(
            f"bank {bank} {currency}: an operator set the net debit cap to "
            f"{_cap_shown(state.items.get(key), currency)} (operator action "
            f"#{state.cap_setters[item].seq}); the file says "
            f"{_cap_shown(after.get(key), currency)}"
        )
    return (
        "; ".join(lines) + ". A load never overwrites a cap an operator set: put the "
        "operator's value in the file, or set the cap with `sakk liquidity cap`, then load "
        "again (or load with --keep-operator-caps to leave them as they are)"
    )


def _cap_shown(value: Mapping[str, Any] | None, currency: str) -> str:
    if value is None:
        return "none (the bank unbounded)"
    cap = format_minor(value["net_debit_cap_minor"], currency)
    return f"{cap}, alert at {value['alert_percent']} %"


def _versions(
    state: LoadState, after: dict[str, Any], changed: list[str], at: datetime,
    effective: datetime,
) -> list[VersionChange]:  # fmt: skip
    """One version per item the load changes: caps always (in force at once), fees and
    limits unless this is the ledger's first load (in force after the notice)."""
    versions: list[VersionChange] = []
    for key in changed:
        prefix, item = key.split(" ", 1)
        kind = _KIND_OF_PREFIX[prefix]
        if kind != CAP and state.first_load:
            continue
        when = at if kind == CAP else effective
        number = state.newest_version + len(versions) + 1
        versions.append(
            VersionChange(kind, item, state.items.get(key), after.get(key), number, at, when)
        )
    return versions
