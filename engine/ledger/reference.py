"""Reference data: banks, accounts, fee schedule and channel limits, from a file a bank can write.

The file is JSON::

    {"banks": [{"code": "007", "name": "Attijariwafa bank", "bic": "BCMAMAMC",
                "webhook_url": null, "notification_format": "json"}],
     "accounts": [{"number": "007780000123456789012345", "bank": "007",
                   "kind": "CUSTOMER", "holder": "...", "currency": "MAD",
                   "overdraft_limit_minor": 0, "opening_balance_minor": 500000,
                   "status": "ACTIVE"}],
     "fee_schedule": [{"channel": "WEB", "payment_type": "PURCHASE", "currency": "MAD",
                       "fixed_minor": 0, "rate_bps": 50, "max_minor": 2000}],
     "channel_limits": [{"channel": "ATM", "currency": "MAD", "max_amount_minor": 500000}],
     "bank_limits": [{"bank": "007", "currency": "MAD", "net_debit_cap_minor": 5000000000,
                      "alert_percent": 80, "liquidity_minor": 6000000000}]}

A bank's ``bank_limits`` entry bounds its interbank position (``engine.risk.limits``): its
net debit cap, the share of it that alerts it, and the liquidity it deposits at the switch
when its liquidity account is first created (later deposits and withdrawals are
``FundsIn`` / ``FundsOut`` events). A bank without an entry is not bounded.

Loading is idempotent: banks, accounts' descriptive fields, fees and limits
are upserted; an opening balance is posted (double entry, against the bank's
funding account) only when the account is first created.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select, update

from engine.config import MAX_HOLD_EXPIRY_S, MIN_HOLD_EXPIRY_S
from engine.ledger.exceptions import ReferenceDataError
from engine.ledger.keys import KeyEntry, parse_key_entry, register_keys
from engine.ledger.models import (
    Account,
    AccountKind,
    AccountStatus,
    Bank,
    BankLimit,
    ChannelLimit,
    FeeRule,
    table_of,
)
from engine.ledger.positions import (
    LOAD_SOURCE,
    ensure_rows,
    journal_limits,
    liquidity_balances,
)
from engine.ledger.postings import Leg, PostingDraft, write_postings
from engine.money import MAX_AMOUNT_MINOR, is_known_currency
from engine.risk.limits import MAX_ALERT_PERCENT, MAX_LIMIT_MINOR, MIN_ALERT_PERCENT
from engine.trust.exceptions import KeyRegistryError

CHANNELS = ("WEB", "MOBILE", "ATM", "POS", "BRANCH", "EGOV")
PAYMENT_TYPES = ("TRANSFER", "PURCHASE", "CASH_WITHDRAWAL", "EGOV")
REFUND = "REFUND"  # a fee rule's payment type for refunds (charged to the refunding payee)
FEE_PAYMENT_TYPES = (*PAYMENT_TYPES, REFUND)
# How a bank's webhook is told (null: json); see docs/iso20022.md.
NOTIFICATION_FORMATS = ("json", "pacs.002")
OPENING_TIME = datetime(2000, 1, 1, tzinfo=UTC)


@cache
def internal_account(bank_code: str, kind: AccountKind, currency: str) -> str:
    """Number of a bank's internal account, e.g. ``007-SETTLEMENT-MAD``."""
    return f"{bank_code}-{kind.value}-{currency}"


def funding_account(bank_code: str, currency: str) -> str:
    """The bank's equity account that opening balances are posted against."""
    return f"{bank_code}-FUNDING-{currency}"


@dataclass(frozen=True)
class FeeSchedule:
    """Fee rules by (channel, payment type, currency): fixed + basis points, capped."""

    rules: Mapping[tuple[str, str, str], tuple[int, int, int | None]] = field(default_factory=dict)


@dataclass(frozen=True)
class Limits:
    """Largest amount accepted per (channel, currency), and how long a hold lives there."""

    max_amount_minor: Mapping[tuple[str, str], int] = field(default_factory=dict)
    hold_expiry_s: Mapping[tuple[str, str], int] = field(default_factory=dict)  # absent: default


def read_fee_schedule(conn: Connection) -> FeeSchedule:
    rows = conn.execute(select(FeeRule.__table__))
    return FeeSchedule(
        {
            (r.channel, r.payment_type, r.currency): (r.fixed_minor, r.rate_bps, r.max_minor)
            for r in rows
        }
    )


def read_limits(conn: Connection) -> Limits:
    rows = conn.execute(select(ChannelLimit.__table__)).all()
    return Limits(
        {(r.channel, r.currency): r.max_amount_minor for r in rows},
        {(r.channel, r.currency): r.hold_expiry_s for r in rows if r.hold_expiry_s is not None},
    )


def read_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ReferenceDataError(f"{path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ReferenceDataError(f"{path}: expected a JSON object at the top")
    return data


@dataclass
class LoadReport:
    banks: int = 0
    accounts_created: int = 0
    accounts_updated: int = 0
    fee_rules: int = 0
    channel_limits: int = 0
    keys_registered: int = 0
    versions: int = 0  # reference versions the load wrote (engine.ops.reference_load)
    operator_caps_kept: int = 0  # caps an operator set, left as they are


def load_reference_data(engine: Engine | Connection, data: Mapping[str, Any]) -> LoadReport:
    """Validate ``data`` fully, then upsert it in one transaction (the caller's, given one)."""
    banks = [_check_bank(i, b) for i, b in enumerate(data.get("banks", []))]
    bank_codes = {b["code"] for b in banks}
    keys = _check_keys(data.get("banks", []))
    accounts = [_check_account(i, a, bank_codes) for i, a in enumerate(data.get("accounts", []))]
    fees = [_check_fee(i, f) for i, f in enumerate(data.get("fee_schedule", []))]
    limits = [_check_limit(i, lim) for i, lim in enumerate(data.get("channel_limits", []))]
    bank_limits = [
        _check_bank_limit(i, b, bank_codes) for i, b in enumerate(data.get("bank_limits", []))
    ]
    liquidity = {(b["bank_code"], b["currency"]): b.pop("liquidity_minor") for b in bank_limits}
    report = LoadReport(banks=len(banks), fee_rules=len(fees), channel_limits=len(limits))
    with engine.begin() if isinstance(engine, Engine) else nullcontext(engine) as conn:
        _upsert_banks(conn, banks)
        try:
            report.keys_registered = register_keys(conn, keys)
        except KeyRegistryError as exc:
            raise ReferenceDataError(str(exc)) from exc
        currencies = {a["currency"] for a in accounts} or {"MAD"}
        internal = [
            _internal(code, kind, cur)
            for code in sorted(bank_codes)
            for cur in sorted(currencies)
            for kind in (AccountKind.FEE_INCOME, AccountKind.SETTLEMENT, AccountKind.CASH)
        ] + [_liquidity(code, cur, liquidity) for code in sorted(bank_codes)
             for cur in sorted(currencies)]  # fmt: skip
        funding = [_funding(code, cur) for code in sorted(bank_codes) for cur in sorted(currencies)]
        created, updated = _upsert_accounts(conn, internal + funding + accounts)
        report.accounts_created, report.accounts_updated = created, updated
        conn.execute(delete(FeeRule))
        if fees:
            conn.execute(insert(FeeRule), fees)
        conn.execute(delete(ChannelLimit))
        if limits:
            conn.execute(insert(ChannelLimit), limits)
        caps_before = _caps(conn)
        conn.execute(delete(BankLimit))
        if bank_limits:
            conn.execute(insert(BankLimit), bank_limits)
        rows = [(code, cur) for code in bank_codes for cur in currencies]
        ensure_rows(conn, rows, liquidity_balances(conn))
        _journal_caps(conn, caps_before, _caps(conn))
    return report


def _caps(conn: Connection) -> dict[tuple[str, str], int]:
    t = table_of(BankLimit)
    rows = conn.execute(select(t.c.bank_code, t.c.currency, t.c.net_debit_cap_minor))
    return {(r.bank_code, r.currency): int(r.net_debit_cap_minor) for r in rows}


def _journal_caps(
    conn: Connection, before: Mapping[tuple[str, str], int], after: Mapping[tuple[str, str], int]
) -> None:
    """Journal each cap the file set, changed or removed, in its bank's write order."""
    for key in sorted(set(before) | set(after)):
        if before.get(key) != after.get(key):
            journal_limits(conn, *key, after.get(key), LOAD_SOURCE)


def _liquidity(bank: str, currency: str, opening: Mapping[tuple[str, str], int]) -> dict[str, Any]:
    """A bank's liquidity account at the switch, with its first deposit if the file has one."""
    account = _internal(bank, AccountKind.LIQUIDITY, currency)
    account.update(
        holder=f"{bank} liquidity", opening_balance_minor=opening.get((bank, currency), 0)
    )
    return account


def _internal(bank: str, kind: AccountKind, currency: str) -> dict[str, Any]:
    return {
        "number": internal_account(bank, kind, currency), "bank_code": bank, "kind": kind.value,
        "holder": f"{bank} {kind.value.lower().replace('_', ' ')}", "currency": currency,
        "status": AccountStatus.ACTIVE.value, "overdraft_limit_minor": None,
        "opening_balance_minor": 0,
    }  # fmt: skip


def _funding(bank: str, currency: str) -> dict[str, Any]:
    account = _internal(bank, AccountKind.SETTLEMENT, currency)
    account.update(
        number=funding_account(bank, currency),
        kind=AccountKind.FUNDING.value,
        holder=f"{bank} funding",
    )
    return account


def _upsert_banks(conn: Connection, banks: list[dict[str, Any]]) -> None:
    existing = set(conn.execute(select(Bank.code)).scalars())
    new = [b for b in banks if b["code"] not in existing]
    if new:
        conn.execute(insert(Bank), new)
    for b in banks:
        if b["code"] in existing:
            conn.execute(update(Bank).where(Bank.code == b["code"]).values(**b))


def _upsert_accounts(conn: Connection, accounts: list[dict[str, Any]]) -> tuple[int, int]:
    existing = set(conn.execute(select(Account.number)).scalars())
    new = [a for a in accounts if a["number"] not in existing]
    if new:
        conn.execute(
            insert(Account),
            [
                {k: v for k, v in a.items() if k != "opening_balance_minor"} | {"balance_minor": 0}
                for a in new
            ],
        )
        openings = [
            PostingDraft(
                posting_id=f"opening:{a['number']}", payment_id=f"opening:{a['number']}",
                kind="OPENING", occurred_at=OPENING_TIME, settlement_window="opening",
                # In place (checked): reference data is loaded alone, no batch competes.
                legs=(Leg(a["number"], a["opening_balance_minor"], a["currency"], checked=True),
                      Leg(funding_account(a["bank_code"], a["currency"]),
                          -a["opening_balance_minor"], a["currency"], checked=True)),
            )
            for a in new if a["opening_balance_minor"]
        ]  # fmt: skip
        write_postings(conn, openings)
    changed = [a for a in accounts if a["number"] in existing]
    for a in changed:
        values = {k: a[k] for k in ("holder", "status", "overdraft_limit_minor")}
        conn.execute(update(Account).where(Account.number == a["number"]).values(**values))
    return len(new), len(changed)


def _require(entry: Mapping[str, Any], key: str, where: str, kind: type | tuple[type, ...]) -> Any:
    if key not in entry:
        raise ReferenceDataError(f"{where}: missing '{key}'")
    value = entry[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ReferenceDataError(f"{where}: '{key}' must be {kind}, got {value!r}")
    return value


def _optional_int(entry: Mapping[str, Any], key: str, where: str) -> int | None:
    value = entry.get(key)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        raise ReferenceDataError(f"{where}: '{key}' must be a non-negative integer or null")
    return value


def _check_keys(banks: list[Mapping[str, Any]]) -> list[KeyEntry]:
    """Each bank's public keys (``banks[i].keys``), checked before anything is written."""
    entries = []
    for i, b in enumerate(banks):
        keys = b.get("keys", [])
        if not isinstance(keys, list):
            raise ReferenceDataError(f"banks[{i}]: 'keys' must be a list")
        for j, entry in enumerate(keys):
            where = f"banks[{i}].keys[{j}]"
            if not isinstance(entry, Mapping):
                raise ReferenceDataError(f"{where}: must be an object")
            try:
                entries.append(parse_key_entry(str(b.get("code")), entry, where))
            except KeyRegistryError as exc:
                raise ReferenceDataError(str(exc)) from exc
    return entries


def _check_bank(i: int, b: Mapping[str, Any]) -> dict[str, Any]:
    where = f"banks[{i}]"
    return {
        "code": _require(b, "code", where, str),
        "name": _require(b, "name", where, str),
        "bic": b.get("bic"),
        "webhook_url": b.get("webhook_url"),
        "notification_format": _check_choice(b, "notification_format", NOTIFICATION_FORMATS, where),
    }


def _check_choice(entry: Mapping[str, Any], key: str, allowed: tuple[str, ...], where: str) -> Any:
    value = entry.get(key)
    if value is not None and value not in allowed:
        raise ReferenceDataError(f"{where}: '{key}' must be one of {list(allowed)} or null")
    return value


def _check_currency(value: str, where: str) -> str:
    if not is_known_currency(value):
        raise ReferenceDataError(f"{where}: unknown ISO 4217 currency {value!r}")
    return value


def _check_account(i: int, a: Mapping[str, Any], bank_codes: set[str]) -> dict[str, Any]:
    where = f"accounts[{i}]"
    number = _require(a, "number", where, str)
    where = f"accounts[{i}] ({number})"
    bank = _require(a, "bank", where, str)
    if bank not in bank_codes:
        raise ReferenceDataError(f"{where}: unknown bank {bank!r}")
    kind = _require(a, "kind", where, str)
    if kind not in (AccountKind.CUSTOMER, AccountKind.MERCHANT, AccountKind.GOVERNMENT):
        raise ReferenceDataError(f"{where}: kind must be CUSTOMER, MERCHANT or GOVERNMENT")
    status = a.get("status", AccountStatus.ACTIVE.value)
    if status not in AccountStatus.__members__:
        raise ReferenceDataError(
            f"{where}: status must be one of {list(AccountStatus.__members__)}"
        )
    opening = _optional_int(a, "opening_balance_minor", where) or 0
    if opening > MAX_AMOUNT_MINOR:
        raise ReferenceDataError(f"{where}: opening balance above {MAX_AMOUNT_MINOR}")
    return {
        "number": number, "bank_code": bank, "kind": kind, "holder": a.get("holder", number),
        "currency": _check_currency(_require(a, "currency", where, str), where),
        "status": status,
        "overdraft_limit_minor": _optional_int(a, "overdraft_limit_minor", where) or 0,
        "opening_balance_minor": opening,
    }  # fmt: skip


def _check_fee(i: int, f: Mapping[str, Any]) -> dict[str, Any]:
    where = f"fee_schedule[{i}]"
    channel = _require(f, "channel", where, str)
    payment_type = _require(f, "payment_type", where, str)
    if channel not in CHANNELS or payment_type not in FEE_PAYMENT_TYPES:
        raise ReferenceDataError(
            f"{where}: unknown channel or payment type {channel}/{payment_type}"
        )
    rate = _optional_int(f, "rate_bps", where) or 0
    if rate > 10_000:
        raise ReferenceDataError(f"{where}: rate_bps {rate} above 10000 (100%)")
    return {
        "channel": channel, "payment_type": payment_type,
        "currency": _check_currency(_require(f, "currency", where, str), where),
        "fixed_minor": _optional_int(f, "fixed_minor", where) or 0, "rate_bps": rate,
        "max_minor": _optional_int(f, "max_minor", where),
    }  # fmt: skip


def _check_bank_limit(i: int, b: Mapping[str, Any], bank_codes: set[str]) -> dict[str, Any]:
    where = f"bank_limits[{i}]"
    bank = _require(b, "bank", where, str)
    if bank not in bank_codes:
        raise ReferenceDataError(f"{where}: unknown bank {bank!r}")
    checked = {
        "bank_code": bank,
        "currency": _check_currency(_require(b, "currency", where, str), where),
    }
    for key, low, high in (
        ("net_debit_cap_minor", 0, MAX_LIMIT_MINOR),
        ("alert_percent", MIN_ALERT_PERCENT, MAX_ALERT_PERCENT),
        ("liquidity_minor", 0, MAX_LIMIT_MINOR),
    ):
        value = _require(b, key, where, int)
        if not low <= value <= high:
            raise ReferenceDataError(f"{where}: {key} must be in [{low}, {high}]")
        checked[key] = value
    return checked


def _check_limit(i: int, lim: Mapping[str, Any]) -> dict[str, Any]:
    where = f"channel_limits[{i}]"
    channel = _require(lim, "channel", where, str)
    if channel not in CHANNELS:
        raise ReferenceDataError(f"{where}: unknown channel {channel!r}")
    maximum = _require(lim, "max_amount_minor", where, int)
    if not 0 < maximum <= MAX_AMOUNT_MINOR:
        raise ReferenceDataError(f"{where}: max_amount_minor must be in (0, {MAX_AMOUNT_MINOR}]")
    expiry = _optional_int(lim, "hold_expiry_s", where)
    if expiry is not None and not MIN_HOLD_EXPIRY_S <= expiry <= MAX_HOLD_EXPIRY_S:
        raise ReferenceDataError(
            f"{where}: hold_expiry_s must be in [{MIN_HOLD_EXPIRY_S}, {MAX_HOLD_EXPIRY_S}]"
        )
    return {
        "channel": channel, "max_amount_minor": maximum, "hold_expiry_s": expiry,
        "currency": _check_currency(_require(lim, "currency", where, str), where),
    }  # fmt: skip


def check_fee_rule(entry: Mapping[str, Any], index: int | None = None) -> dict[str, Any]:
    """One fee rule checked as the file's are (an operator's change, ``engine.ops.reference``);
    ``index``: the file's ``fee_schedule[index]``, named so in an error."""
    if index is not None:
        return _check_fee(index, entry)
    try:
        return _check_fee(0, entry)
    except ReferenceDataError as exc:
        raise ReferenceDataError(str(exc).replace("fee_schedule[0]", "fee rule")) from None


def check_bank_limits(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A file's ``bank_limits``, checked as the loader checks them (each bank in its ``banks``)."""
    codes = {str(b.get("code")) for b in data.get("banks", []) if isinstance(b, Mapping)}
    return [_check_bank_limit(i, b, codes) for i, b in enumerate(data.get("bank_limits", []))]


def check_channel_limit(entry: Mapping[str, Any], index: int | None = None) -> dict[str, Any]:
    """One channel limit checked as the file's are (``index``: as for :func:`check_fee_rule`)."""
    if index is not None:
        return _check_limit(index, entry)
    try:
        return _check_limit(0, entry)
    except ReferenceDataError as exc:
        raise ReferenceDataError(str(exc).replace("channel_limits[0]", "channel limit")) from None
