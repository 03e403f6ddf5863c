"""The banks' public keys in the ledger's reference data: register, list, revoke, read.

Invariants kept here: a key id names one public key forever (registering the same id
with another key is refused), and a revocation is never undone — loading a reference
file again can move a revocation earlier, never later, never away.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update

from engine.ledger.models import Bank, BankKey, table_of
from engine.trust.exceptions import KeyRegistryError
from engine.trust.keys import decode_public, fingerprint
from engine.trust.signing import KeyRing, key_rows_as_ring


@dataclass(frozen=True)
class KeyEntry:
    """One public key as the reference data states it."""

    bank_code: str
    key_id: str
    public_key: str
    valid_from: datetime
    valid_until: datetime | None = None
    revoked_at: datetime | None = None

    def as_row(self) -> dict[str, Any]:
        return {
            "bank_code": self.bank_code, "key_id": self.key_id, "public_key": self.public_key,
            "valid_from": self.valid_from, "valid_until": self.valid_until,
            "revoked_at": self.revoked_at,
        }  # fmt: skip

    def as_json(self) -> dict[str, Any]:
        """The entry as a reference file writes it under its bank's ``keys``."""
        entry: dict[str, Any] = {
            "key_id": self.key_id,
            "public_key": self.public_key,
            "valid_from": _iso(self.valid_from),
        }
        if self.valid_until:
            entry["valid_until"] = _iso(self.valid_until)
        if self.revoked_at:
            entry["revoked_at"] = _iso(self.revoked_at)
        return entry


def parse_key_entry(bank_code: str, entry: Mapping[str, Any], where: str) -> KeyEntry:
    """Check one ``keys`` entry of a reference file; raises KeyRegistryError naming it."""
    try:
        public = decode_public(str(entry["public_key"]))
        key_id = str(entry.get("key_id") or fingerprint(public))
        if key_id != fingerprint(public):
            raise KeyRegistryError(
                f"{where}: key_id {key_id} is not the fingerprint of its public key"
            )
        return KeyEntry(
            bank_code, key_id, str(entry["public_key"]), _instant(entry["valid_from"]),
            _instant_or_none(entry.get("valid_until")), _instant_or_none(entry.get("revoked_at")),
        )  # fmt: skip
    except KeyError as exc:
        raise KeyRegistryError(f"{where}: missing '{exc.args[0]}'") from exc
    except ValueError as exc:
        raise KeyRegistryError(f"{where}: {exc}") from exc


def register_keys(conn: Connection, entries: Iterable[KeyEntry]) -> int:
    """Insert new keys, apply later revocations of known ones; returns how many were new."""
    t = table_of(BankKey)
    known = {
        (r.bank_code, r.key_id): r for r in conn.execute(select(t)).all()
    }  # a few keys per bank: one read
    new = []
    for e in entries:
        if e.valid_until is not None and e.valid_until <= e.valid_from:
            raise KeyRegistryError(
                f"key {e.key_id} of bank {e.bank_code}: valid_until <= valid_from"
            )
        row = known.get((e.bank_code, e.key_id))
        if row is None:
            new.append(e.as_row())
            continue
        if row.public_key != e.public_key:
            raise KeyRegistryError(f"key id {e.key_id} of bank {e.bank_code} names another key")
        if e.revoked_at is not None:
            revoke_in(conn, e.bank_code, e.key_id, e.revoked_at)
    if new:
        conn.execute(insert(BankKey), new)
    return len(new)


def revoke_key(engine: Engine, bank_code: str, key_id: str, at: datetime) -> datetime:
    """Revoke a key from ``at`` on; returns the revocation in force (the earlier one wins)."""
    with engine.begin() as conn:
        return revoke_in(conn, bank_code, key_id, at)


def revoke_in(conn: Connection, bank_code: str, key_id: str, at: datetime) -> datetime:
    t = table_of(BankKey)
    row = conn.execute(
        select(t.c.revoked_at).where(t.c.bank_code == bank_code, t.c.key_id == key_id)
    ).first()
    if row is None:
        raise KeyRegistryError(f"bank {bank_code} has no key {key_id}")
    current = _aware_or_none(row.revoked_at)
    if current is not None and current <= at:
        return current
    conn.execute(
        update(t).where(t.c.bank_code == bank_code, t.c.key_id == key_id).values(revoked_at=at)
    )
    return at


def list_keys(conn: Connection, bank_code: str | None = None) -> list[KeyEntry]:
    t = table_of(BankKey)
    query = select(t).order_by(t.c.bank_code, t.c.valid_from, t.c.key_id)
    if bank_code:
        query = query.where(t.c.bank_code == bank_code)
    return [
        KeyEntry(
            r.bank_code,
            r.key_id,
            r.public_key,
            _aware(r.valid_from),
            _aware_or_none(r.valid_until),
            _aware_or_none(r.revoked_at),
        )  # fmt: skip
        for r in conn.execute(query)
    ]


def read_key_ring(conn: Connection) -> KeyRing:
    """Every bank's keys, as the validator checks signatures with them (one read)."""
    return key_rows_as_ring(dict(r) for r in conn.execute(select(table_of(BankKey))).mappings())


def bank_exists(conn: Connection, bank_code: str) -> bool:
    return conn.execute(select(Bank.code).where(Bank.code == bank_code)).first() is not None


def _instant(value: Any) -> datetime:
    if isinstance(value, datetime):
        return _aware(value)
    moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return _aware(moment).astimezone(UTC)


def _instant_or_none(value: Any) -> datetime | None:
    return None if value is None else _instant(value)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _aware_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else _aware(value)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
