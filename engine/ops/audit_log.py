"""The operator audit log: every action, who took it, when, on what, old and new values.

Append-only and hash-chained: row ``seq`` stores ``prev_hash`` (the ``row_hash`` of row
``seq - 1``, :data:`GENESIS_HASH` for the first) and ``row_hash``, the SHA-256 of
``prev_hash`` followed by the row's canonical content (:func:`action_hash`). Triggers
refuse UPDATE and DELETE; someone who gets around them (drops a trigger, edits the file)
still cannot alter, remove or insert a row without :func:`verify_action_log` naming the
first row where the chain no longer holds.

A row is written in the same transaction as the action's own rows
(:mod:`engine.ops.action`): no action without its record, no record without its action.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select, text

from engine.ledger.models import OperatorAction, table_of
from engine.times import as_utc

GENESIS_HASH = "0" * 64
MAX_ACTOR_CHARS = 64  # operator_actions.actor is String(64)
MAX_TARGET_CHARS = 200
MAX_REASON_CHARS = 1_000
MAX_VALUE_CHARS = 100_000  # one action's old or new value, as JSON
LIST_LIMIT_MAX = 10_000
VERIFY_BATCH_ROWS = 5_000  # rows read at a time while walking the chain
ACTION_LOG_LOCK_KEY = 0x53414B4B4F505301  # "SAKKOPS" 1: PostgreSQL advisory lock of the log

_T = table_of(OperatorAction)


class AuditLogError(ValueError):
    """An action record that cannot be kept (an empty actor, a value too large)."""


@dataclass(frozen=True)
class ActionRecord:
    """What the log keeps of one action; ``old`` and ``new`` are JSON-able values."""

    actor: str
    acted_at: datetime
    action: str
    target: str
    old: Any = None
    new: Any = None
    reason: str | None = None

    def __post_init__(self) -> None:
        if not self.actor.strip() or len(self.actor) > MAX_ACTOR_CHARS:
            raise AuditLogError(f"an action names who took it, 1 to {MAX_ACTOR_CHARS} characters")
        if not self.target or len(self.target) > MAX_TARGET_CHARS:
            raise AuditLogError(f"an action's target is 1 to {MAX_TARGET_CHARS} characters")
        if self.reason is not None and len(self.reason) > MAX_REASON_CHARS:
            raise AuditLogError(f"a reason is at most {MAX_REASON_CHARS} characters")


@dataclass(frozen=True)
class LoggedAction:
    """A row of the log, as read back."""

    seq: int
    acted_at: datetime
    actor: str
    action: str
    target: str
    old_value: str | None
    new_value: str | None
    reason: str | None
    prev_hash: str
    row_hash: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq, "acted_at": self.acted_at.isoformat(), "actor": self.actor,
            "action": self.action, "target": self.target, "reason": self.reason,
            "old": _loads(self.old_value), "new": _loads(self.new_value),
            "row_hash": self.row_hash,
        }  # fmt: skip


def canonical_json(value: Any) -> str | None:
    """The JSON text the log stores and hashes: sorted keys, no spaces; None stays None."""
    if value is None:
        return None
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    if len(text) > MAX_VALUE_CHARS:
        raise AuditLogError(f"an action's value is at most {MAX_VALUE_CHARS} characters of JSON")
    return text


def action_hash(
    prev_hash: str,
    seq: int,
    acted_at: datetime,
    actor: str,
    action: str,
    target: str,
    old_value: str | None,
    new_value: str | None,
    reason: str | None,
) -> str:
    """SHA-256 of ``prev_hash`` then the row as a compact JSON array; auditors recompute it.

    The array: ``[seq, acted_at (UTC, ISO 8601 with microseconds), actor, action, target,
    old_value, new_value, reason]``, the values as the JSON text stored.
    """
    when = as_utc(acted_at).isoformat(timespec="microseconds")
    content = [seq, when, actor, action, target, old_value, new_value, reason]
    body = json.dumps(content, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((prev_hash + body).encode()).hexdigest()


def lock_action_log(conn: Connection) -> None:
    """Take turns: one operator action at a time, from its load to its commit.

    On PostgreSQL a transaction-scoped advisory lock (taken again in the same transaction,
    it is held once more, harmlessly); SQLite takes its write lock up front anyway. Should
    two rows still race for one ``seq``, its primary key lets one win and fails the other.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ACTION_LOG_LOCK_KEY})


def append_action(conn: Connection, record: ActionRecord) -> int:
    """Append ``record`` after the log's last row; returns its ``seq``."""
    lock_action_log(conn)
    last = conn.execute(select(_T.c.seq, _T.c.row_hash).order_by(_T.c.seq.desc()).limit(1)).first()
    seq, prev = (1, GENESIS_HASH) if last is None else (last.seq + 1, last.row_hash)
    at = as_utc(record.acted_at)
    old, new = canonical_json(record.old), canonical_json(record.new)
    row_hash = action_hash(
        prev, seq, at, record.actor, record.action, record.target, old, new, record.reason
    )
    conn.execute(
        insert(_T).values(
            seq=seq,
            acted_at=at,
            actor=record.actor,
            action=record.action,
            target=record.target,
            old_value=old,
            new_value=new,
            reason=record.reason,
            prev_hash=prev,
            row_hash=row_hash,
        )  # fmt: skip
    )
    return seq


def next_action_seq(conn: Connection) -> int:
    """The ``seq`` the next appended row gets."""
    return int(conn.execute(select(func.coalesce(func.max(_T.c.seq), 0))).scalar_one()) + 1


def list_actions(
    conn: Connection, limit: int = 100, after_seq: int = 0, action: str | None = None
) -> list[LoggedAction]:
    """Rows after ``after_seq``, oldest first, at most ``limit`` (page on with the last seq)."""
    if not 1 <= limit <= LIST_LIMIT_MAX:
        raise ValueError(f"limit={limit}: expected 1..{LIST_LIMIT_MAX}")
    query = select(_T).where(_T.c.seq > after_seq).order_by(_T.c.seq).limit(limit)
    if action is not None:
        query = query.where(_T.c.action == action)
    return [_logged(r) for r in conn.execute(query)]


@dataclass
class ActionLogCheck:
    """What :func:`verify_action_log` found: rows walked and every break, by row."""

    rows: int = 0
    last_seq: int = 0
    head_hash: str = GENESIS_HASH
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_action_log(conn: Connection) -> ActionLogCheck:
    """Walk the log in ``seq`` order; name every row whose link or content was altered."""
    check = ActionLogCheck()
    expected_seq, prev = 1, GENESIS_HASH
    for row in _walk(conn):
        check.rows += 1
        where = f"operator action #{row.seq} ({row.action} {row.target} by {row.actor})"
        if row.seq != expected_seq:
            check.problems.append(f"{where}: expected #{expected_seq} here, rows are missing")
        if row.prev_hash != prev:
            check.problems.append(f"{where}: prev_hash does not match the row before it")
        recomputed = action_hash(
            row.prev_hash, row.seq, row.acted_at, row.actor, row.action, row.target,
            row.old_value, row.new_value, row.reason,
        )  # fmt: skip
        if recomputed != row.row_hash:
            check.problems.append(f"{where}: content altered (its hash no longer matches)")
        expected_seq, prev = row.seq + 1, row.row_hash
        check.last_seq, check.head_hash = row.seq, row.row_hash
    return check


def count_actions(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(_T)).scalar_one())


def _walk(conn: Connection) -> Iterator[LoggedAction]:
    after = 0
    while True:
        rows = conn.execute(
            select(_T).where(_T.c.seq > after).order_by(_T.c.seq).limit(VERIFY_BATCH_ROWS)
        ).all()
        for r in rows:
            yield _logged(r)
        if len(rows) < VERIFY_BATCH_ROWS:
            return
        after = rows[-1].seq


def _logged(r: Any) -> LoggedAction:
    return LoggedAction(
        r.seq, as_utc(r.acted_at), r.actor, r.action, r.target, r.old_value, r.new_value,
        r.reason, r.prev_hash, r.row_hash,
    )  # fmt: skip


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)
