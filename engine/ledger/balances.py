"""Account balances: the account row plus its deltas not yet folded in.

A settlement batch updates in place only the payers' checked debits (each payer is
debited from its own partition alone, so no other batch waits on that row). Every
other balance change (credits to payees, a bank's settlement and fee-income accounts,
debits to accounts without a limit) is appended to ``account_balance_deltas``:
inserting locks nothing that another batch needs, so the rows every payment touches
never serialise the flow, and two settlement instances never wait on each other's hot
accounts.

An account's balance is always ``balance_minor + sum(deltas)``, and it equals the sum
of the account's entries. :func:`fold` moves deltas into the rows from time to time;
it deletes the deltas it folds with ``DELETE ... RETURNING``, so two folds racing on
PostgreSQL never fold the same delta twice (the second waits on the row locks and then
finds the rows gone).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

from sqlalchemy import Connection, bindparam, delete, func, select, update

from engine.ledger.models import Account, AccountBalanceDelta, table_of
from engine.ledger.queries import select_in


def pending(conn: Connection, numbers: Iterable[str]) -> dict[str, int]:
    """Deltas not yet folded, summed per account, for ``numbers`` (absent: none)."""
    d = table_of(AccountBalanceDelta)
    query = select(d.c.account_number, func.sum(d.c.delta_minor).label("total")).group_by(
        d.c.account_number
    )
    return {
        r.account_number: int(r.total) for r in select_in(conn, query, d.c.account_number, numbers)
    }


def all_balances(conn: Connection) -> dict[str, int]:
    """Every account's balance: its row plus its pending deltas."""
    a, d = table_of(Account), table_of(AccountBalanceDelta)
    balances = {n: int(b) for n, b in conn.execute(select(a.c.number, a.c.balance_minor))}
    for number, total in conn.execute(
        select(d.c.account_number, func.sum(d.c.delta_minor)).group_by(d.c.account_number)
    ):
        balances[number] = balances.get(number, 0) + int(total)
    return balances


def fold(conn: Connection, max_rows: int) -> int:
    """Move up to ``max_rows`` of the oldest deltas into their accounts; returns how many."""
    d = table_of(AccountBalanceDelta)
    first = conn.execute(select(func.min(d.c.id))).scalar()
    if first is None:
        return 0
    taken = conn.execute(
        delete(d).where(d.c.id < first + max_rows).returning(d.c.account_number, d.c.delta_minor)
    ).all()
    totals: dict[str, int] = defaultdict(int)
    for number, delta in taken:
        totals[number] += int(delta)
    apply_in_place(conn, totals)
    return len(taken)


def apply_in_place(conn: Connection, deltas: Mapping[str, int]) -> None:
    """``balance += delta`` in the account rows, in account order (the lock order)."""
    changed = [{"number_": n, "delta": v} for n, v in sorted(deltas.items()) if v != 0]
    if not changed:
        return
    a = table_of(Account)
    conn.execute(
        update(a)
        .where(a.c.number == bindparam("number_"))
        .values(balance_minor=a.c.balance_minor + bindparam("delta")),
        changed,
    )


def balance_of(conn: Connection, number: str) -> int:
    """One account's balance (0 for an unknown account)."""
    a = table_of(Account)
    row = conn.execute(select(a.c.balance_minor).where(a.c.number == number)).scalar()
    return int(row or 0) + pending(conn, [number]).get(number, 0)
