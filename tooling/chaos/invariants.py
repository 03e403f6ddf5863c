"""Every property a chaos run must keep, checked after the drain from the ledger and the wire.

Each ``check_*`` returns readable violations (empty: the property holds) and adds what
it counted to ``Checked``. They share nothing but their inputs, so one broken property
never hides another.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, select

from consumers.notification import notification_id
from consumers.notify.rules import notified_event_id
from engine.config import Settings
from engine.domain.notifications import CAP_ALERT
from engine.domain.notifications import NotificationStatus as N
from engine.domain.steps import STEPS, Money
from engine.events import EMITTED_BY_STAGES, FUNDS_IN, OUTCOME_EVENTS
from engine.ledger.balances import all_balances
from engine.ledger.checks import check_ledger
from engine.ledger.checks import check_lifecycle as check_lifecycle_ledger
from engine.ledger.models import (
    Account,
    AccountKind,
    DeadLetter,
    HandledEvent,
    LiquidityMovement,
    Notification,
    NotificationAttempt,
    Payment,
    PaymentTransition,
    Posting,
)
from engine.ledger.models import PaymentState as S
from engine.ledger.reference import funding_account, internal_account
from engine.pipeline.quarantine import MAX_DEATHS, poison_reason
from engine.serialization import AvroCodec, DecodeError
from sakk.app import TOPOLOGY
from tooling.chaos.faults import WebhookLog
from tooling.chaos.latency import Interval, LatencySplit, delivery_latencies
from tooling.chaos.lifecycle_checks import (
    POSTED,
    LedgerSteps,
    check_holds,
    check_lifecycle_payments,
    check_notified,
    check_step_events,
    check_steps,
    first_answer,
)
from tooling.chaos.operator import OperatorRun
from tooling.chaos.risk_checks import RiskChecked, check_risk
from tooling.chaos.wire import WireRecord
from tooling.workload.chaos import Workload
from tooling.workload.flows import APPLIED

MAX_LISTED = 20  # violations of one kind listed one by one; the rest are counted
EVENT_TOPICS = tuple(dict.fromkeys(e.topic_name for e in EMITTED_BY_STAGES))  # stages emit
NOTIFIED_TOPICS = tuple(e.topic_name for e in OUTCOME_EVENTS)  # the notification stage reads
# The banks that stayed up must get 99% of their notifications within this bound while
# another bank's endpoint hangs, counting those no stage-wide fault caught in flight
# (tooling.chaos.latency). With the harness's settings an attempt takes at most the
# webhook timeout (1 s) and a retry waits at most 1 s; at the 30% random failure rate
# one notification in a hundred needs four attempts or more (0.3^4 = 0.8%): ~5 s when
# each failure is a timeout. The rest is bursts: a lagging flow catches up with hundreds
# of notifications due at once, served 4 in flight per bank from 16 threads, banks in
# code order (the last ones wait longest), on a busy 2-core machine (six Python
# processes, the broker, SQLite write locks). Short runs measured p99s of 1.7 to 7.7 s
# (mean 5); 12 s keeps a margin for a slower machine. None of it depends on how long
# the bank hangs (it holds only its own 4 attempts, 1 s each), so the bound does not grow
# with the outage, which lasts 70% of the fault window at least: 21 s of a 30 s run,
# 22 to 36 s as measured.
HEALTHY_P99_BOUND_S = 12.0


@dataclass
class Checked:
    """What the checks looked at: the report's figures."""

    payments: int = 0
    states: Counter[str] = field(default_factory=Counter)
    dead_lettered: int = 0
    postings: int = 0
    notifications: Counter[str] = field(default_factory=Counter)
    wire_events: int = 0
    wire_duplicates: int = 0  # copies of an event on the wire, each without effect
    accounts: int = 0
    latency: LatencySplit | None = None  # delivery latency, healthy banks and the one down
    steps: Counter[str] = field(default_factory=Counter)  # "CAPTURE APPLIED" -> count
    refusals: Counter[str] = field(default_factory=Counter)  # reason of refused steps -> count
    holds: Counter[str] = field(default_factory=Counter)  # hold state -> count
    risk: RiskChecked = field(default_factory=RiskChecked)  # caps, liquidity, windows


@dataclass
class Evidence:
    """Everything the checks read: gathered once, after the consumers stopped."""

    settings: Settings
    codec: AvroCodec
    workload: Workload
    start_balances: Mapping[str, int]
    wire: Mapping[str, list[WireRecord]]  # short topic name ("settled") -> records
    webhook: WebhookLog | None
    down_bank: str | None = None  # the bank whose endpoint was down for most of the run
    down_window: Interval | None = None  # when it was down (UTC)
    stage_faults: list[Interval] = field(default_factory=list)  # freezes, ledger outages, ...
    operator: OperatorRun | None = None  # the movements and the window the run settled


def check_all(conn: Connection, evidence: Evidence) -> tuple[Checked, list[str]]:
    checked = Checked()
    payments = {r.payment_id: r for r in conn.execute(select(Payment.__table__))}
    ledger = LedgerSteps.read(conn)
    violations = (
        check_outcomes(conn, evidence.workload, payments, checked)
        + check_postings(conn, payments, checked)
        + check_money(conn, payments, ledger, evidence.start_balances, checked)
        + check_effects_once(conn, payments, ledger, evidence, checked)
        + check_wire(payments, evidence, checked)
        + check_lifecycle(conn, payments, ledger, evidence, checked)
        + check_notifications(conn, payments, ledger, evidence, checked)
        + check_latency(conn, evidence, checked)
        + _listed(
            "risk",
            check_risk(
                conn,
                evidence.settings,
                evidence.workload,
                evidence.operator,
                evidence.webhook,
                payments,
                checked.risk,
            ),
        )  # fmt: skip
    )
    return checked, violations


def check_lifecycle(
    conn: Connection,
    payments: Mapping[str, Any],
    ledger: LedgerSteps,
    evidence: Evidence,
    checked: Checked,
) -> list[str]:
    """Holds, captures, voids, expiries, refunds and returns: the ledger's invariants by the
    product's auditor (engine.ledger.checks), the wire's and the workload's by
    tooling.chaos.lifecycle_checks."""
    for row in ledger.steps.values():
        checked.steps[f"{row.kind} {row.outcome}"] += 1
        if row.reason_code and row.outcome != APPLIED:
            checked.refusals[row.reason_code] += 1
    checked.holds = Counter(str(h.state) for h in ledger.holds.values())
    completed = _distinct_ids(evidence.codec, evidence.wire.get("steps", []))[0]
    refused = _distinct_ids(evidence.codec, evidence.wire.get("steps-refused", []))[0]
    return _listed(
        "lifecycle",
        check_steps(ledger, evidence.workload)
        + check_lifecycle_payments(payments, evidence.workload)
        + check_step_events(ledger, payments, completed, refused)
        + check_holds(ledger, payments, completed)
        + check_lifecycle_ledger(conn).violations,  # the product's auditor
    )


def _listed(title: str, items: Iterable[str]) -> list[str]:
    items = list(items)
    shown = [f"{title}: {item}" for item in items[:MAX_LISTED]]
    if len(items) > MAX_LISTED:
        shown.append(f"{title}: ... and {len(items) - MAX_LISTED} more")
    return shown


def check_outcomes(
    conn: Connection, workload: Workload, payments: Mapping[str, Any], checked: Checked
) -> list[str]:
    """published = answered + dead-lettered, each payment in its expected state and reason.

    Answered: in any state but VALIDATED (settled, rejected, failed, or further along the
    lifecycle: authorized, captured, voided, expired, refunded, returned).
    """
    violations = _listed(
        "payment lost (published, not in the ledger)",
        sorted(set(workload.payments) - set(payments)),
    )
    violations += _listed(
        "payment in the ledger that was never published",
        sorted(set(payments) - set(workload.payments)),
    )
    wrong = []
    for pid, expected in sorted(workload.payments.items()):
        row = payments.get(pid)
        if row is None:
            continue
        checked.states[row.state] += 1
        if row.state not in expected.outcomes:
            wrong.append(
                f"{pid} ({expected.label}) is {row.state} {row.reason_code or ''}, "
                f"expected {'/'.join(expected.outcomes)}"
            )
        elif expected.outcomes[row.state] not in (None, row.reason_code):
            wrong.append(
                f"{pid} ({expected.label}) is {row.state} with {row.reason_code}, "
                f"expected {expected.outcomes[row.state]}"
            )
    violations += _listed("wrong outcome", wrong)
    checked.payments = len(payments)
    dead = Counter(
        kind
        for consumer, kind in conn.execute(select(DeadLetter.consumer, DeadLetter.kind))
        if consumer == TOPOLOGY.entry.name
    )
    downstream = Counter(
        f"{consumer} ({kind}: {reason})"
        for consumer, kind, reason in conn.execute(
            select(DeadLetter.consumer, DeadLetter.kind, DeadLetter.reason)
        )
        if consumer != TOPOLOGY.entry.name
    )
    checked.dead_lettered = sum(dead.values())
    violations += _listed(
        "poison dead-lettered without MAX_DEATHS deaths alone",
        [
            f"{topic}:{partition}:{offset}: {reason}"
            for topic, partition, offset, reason in conn.execute(
                select(
                    DeadLetter.source_topic, DeadLetter.source_partition,
                    DeadLetter.source_offset, DeadLetter.reason,
                ).where(DeadLetter.kind == "poison")
            )
            if poison_reason(MAX_DEATHS) != reason  # only the planted one, killed alone
        ],
    )  # fmt: skip
    if dead != workload.dead_letters:
        violations.append(
            f"dead letters by kind {dict(sorted(dead.items()))} != poison published "
            f"{dict(sorted(workload.dead_letters.items()))}"
        )
    violations += _listed(
        "good payment dead-lettered downstream",
        [f"{n} by {c}" for c, n in sorted(downstream.items())],
    )
    answered = sum(n for state, n in checked.states.items() if state != S.VALIDATED)
    if workload.published != answered + checked.dead_lettered:
        states = " + ".join(f"{s.lower()} {n}" for s, n in sorted(checked.states.items()))
        violations.append(
            f"published {workload.published} != {states} + dead-lettered {checked.dead_lettered}"
        )
    return violations


def check_postings(conn: Connection, payments: Mapping[str, Any], checked: Checked) -> list[str]:
    """One PAYMENT posting per settled one-step payment (refunded or returned since
    included), none for any other; double entry holds. Step postings: lifecycle_checks."""
    by_payment: dict[str, list[str]] = defaultdict(list)
    for posting_id, payment_id, kind in conn.execute(
        select(Posting.posting_id, Posting.payment_id, Posting.kind)
    ):
        if kind == "PAYMENT":
            by_payment[payment_id].append(posting_id)
    checked.postings = sum(len(p) for p in by_payment.values())
    problems = []
    for pid, row in sorted(payments.items()):
        postings = by_payment.get(pid, [])
        settled = first_answer(row) == S.SETTLED
        if settled and (len(postings) != 1 or postings[0] != row.posting_id):
            problems.append(
                f"settled payment {pid} has postings {postings}, payment says {row.posting_id}"
            )
        elif not settled and postings:
            problems.append(f"{row.state.lower()} payment {pid} has postings {postings}")
    problems += [
        f"posting for unknown payment {pid}" for pid in sorted(set(by_payment) - set(payments))
    ]
    ledger = check_ledger(conn)
    checked.accounts = ledger.accounts
    return _listed("posting", problems) + _listed("ledger", ledger.violations)


def _moves(
    payer: tuple[str, str], payee: tuple[str, str], amount: int, fee: int, cur: str
) -> list[tuple[str, int]]:
    """What ``payer`` (bank, account) paying ``payee`` moves: the amount, the fee to the
    payer's bank, and the interbank legs through both banks' settlement accounts."""
    (payer_bank, payer_account), (payee_bank, payee_account) = payer, payee
    moves = [(payer_account, -(amount + fee)), (payee_account, amount)]
    if fee:
        moves.append((internal_account(payer_bank, AccountKind.FEE_INCOME, cur), fee))
    if payer_bank != payee_bank:
        moves.append((internal_account(payer_bank, AccountKind.SETTLEMENT, cur), amount))
        moves.append((internal_account(payee_bank, AccountKind.SETTLEMENT, cur), -amount))
    return moves


def _payment_moves(row: Any, ledger: LedgerSteps) -> list[tuple[str, int]]:
    """A payment's moves: its settlement, or its captures; then its refunds and returns,
    paid the other way (the payee pays, the fee goes to the payee's bank)."""
    payer = (row.payer_bank, row.payer_account)
    payee = (row.payee_bank, row.payee_account)
    steps = ledger.applied(row.payment_id, POSTED)
    moves = []
    if first_answer(row) == S.SETTLED:
        step_fees = sum(s.fee_minor for s in steps)  # the payment's fee_minor counts them too
        moves += _moves(payer, payee, row.amount_minor, (row.fee_minor or 0) - step_fees,
                        row.currency)  # fmt: skip
    for s in steps:
        paying, paid = (payer, payee) if STEPS[s.kind].money is Money.TO_PAYEE else (payee, payer)
        moves += _moves(paying, paid, s.amount_minor, s.fee_minor, row.currency)
    return moves


def _liquidity_moves(conn: Connection) -> list[tuple[str, int]]:
    """What the posted FundsIn / FundsOut moved: the bank's liquidity account against its
    funding account (consumers.liquidity)."""
    m = LiquidityMovement.__table__
    moves = []
    for bank, cur, kind, amount in conn.execute(
        select(m.c.bank_code, m.c.currency, m.c.kind, m.c.amount_minor).where(
            m.c.outcome == "POSTED"
        )
    ):
        signed = amount if kind == "FUNDS_IN" else -amount
        moves.append((internal_account(bank, AccountKind.LIQUIDITY, cur), signed))
        moves.append((funding_account(bank, cur), -signed))
    return moves


def check_money(
    conn: Connection,
    payments: Mapping[str, Any],
    ledger: LedgerSteps,
    start_balances: Mapping[str, int],
    checked: Checked,
) -> list[str]:
    """Each balance moved by exactly its payments' and steps' legs (recomputed independently)."""
    expected = dict(start_balances)
    for row in payments.values():
        for account, delta in _payment_moves(row, ledger):
            expected[account] = expected.get(account, 0) + delta
    for account, delta in _liquidity_moves(conn):
        expected[account] = expected.get(account, 0) + delta
    actual = all_balances(conn)
    off = [
        f"{n}: {actual.get(n)} != {expected.get(n)} expected from its payments and steps"
        for n in sorted(set(expected) | set(actual))
        if actual.get(n) != expected.get(n, 0)
    ]
    totals: dict[str, int] = defaultdict(int)
    currencies = dict(conn.execute(select(Account.number, Account.currency)).all())
    for number, balance in actual.items():
        totals[currencies[number]] += balance
    unconserved = [f"{c}: balances sum to {t}" for c, t in sorted(totals.items()) if t != 0]
    return _listed("balance", off) + _listed("money not conserved", unconserved)


def check_effects_once(
    conn: Connection,
    payments: Mapping[str, Any],
    ledger: LedgerSteps,
    evidence: Evidence,
    checked: Checked,
) -> list[str]:
    """Every event handled once per consumer, every payment moved once per stage and once
    per applied step (a partial step moves it to the state it is in)."""
    transitions: dict[str, list[tuple[str | None, str]]] = defaultdict(list)
    for pid, from_state, to_state in conn.execute(
        select(
            PaymentTransition.payment_id, PaymentTransition.from_state, PaymentTransition.to_state
        ).order_by(PaymentTransition.id)
    ):
        transitions[pid].append((from_state, to_state))
    problems = []
    applied: Counter[str] = Counter(
        r.payment_id for r in ledger.steps.values() if r.outcome == APPLIED
    )
    for pid, row in sorted(payments.items()):
        moved = transitions.get(pid, [])
        if not _moved_once(moved, row.state, applied[pid], first_answer(row)):
            problems.append(
                f"{pid} moved {moved}, expected to {first_answer(row)} then once per each of "
                f"its {applied[pid]} applied steps, ending {row.state}"
            )
    handled = Counter(consumer for (consumer,) in conn.execute(select(HandledEvent.consumer)))
    wire = evidence.wire
    expected_handled = {
        TOPOLOGY.entry.name: len(_distinct_ids(evidence.codec, wire.get("initiated", []))[0])
        + _undecodable(evidence.codec, wire.get("initiated", [])),
        TOPOLOGY.deciding.name: len(_distinct_ids(evidence.codec, wire.get("validated", []))[0])
        + len(_distinct_ids(evidence.codec, wire.get(FUNDS_IN.topic_name, []))[0]),
        TOPOLOGY.notifying.name: sum(
            len(_distinct_ids(evidence.codec, wire.get(t, []))[0]) for t in NOTIFIED_TOPICS
        ),
    }
    for consumer, count in expected_handled.items():
        if handled[consumer] != count:
            problems.append(
                f"{consumer} handled {handled[consumer]} events, {count} distinct ones reached it"
            )
    return _listed("effect", problems)


def _moved_once(moved: list[tuple[str | None, str]], state: str, steps: int, first: str) -> bool:
    """(None, VALIDATED), (VALIDATED, first answer), then one link per applied step, each
    from where the previous one ended, the last to the payment's state; or (None, REJECTED)."""
    if first == S.REJECTED:
        return moved == [(None, S.REJECTED)]
    if moved[:2] != [(None, S.VALIDATED), (S.VALIDATED, first)] or len(moved) != 2 + steps:
        return False
    return all(a[1] == b[0] for a, b in zip(moved[1:], moved[2:], strict=False)) and (
        moved[-1][1] == state
    )


def check_wire(payments: Mapping[str, Any], evidence: Evidence, checked: Checked) -> list[str]:
    """Downstream events may repeat on the wire, never differ, and match the ledger one to one."""
    wire, codec, workload = evidence.wire, evidence.codec, evidence.workload
    problems = []
    initiated = wire.get("initiated", [])
    if len(initiated) != len(workload.messages):
        problems.append(
            f"payments.initiated holds {len(initiated)} messages, "
            f"{len(workload.messages)} were published"
        )
    by_first = defaultdict(set)
    for pid, row in payments.items():
        by_first[first_answer(row)].add(pid)
    expected_payments = {  # a payment's own events; its steps' are lifecycle_checks'
        "validated": set(payments) - by_first[S.REJECTED],
        "rejected": by_first[S.REJECTED],
        "settled": by_first[S.SETTLED],
        "failed": by_first[S.FAILED],
    }
    for topic in EVENT_TOPICS:
        events, conflicts, copies = _distinct_ids(codec, wire.get(topic, []))
        checked.wire_events += len(events)
        checked.wire_duplicates += copies
        problems += [
            f"event {eid} on {topic} has different content in its copies" for eid in conflicts
        ]
        if topic in expected_payments:
            seen = Counter(
                record["payment_id"] for record in events.values() if "step" not in record
            )
            twice = sorted(pid for pid, n in seen.items() if n > 1)
            problems += [
                f"payment {pid} has {seen[pid]} distinct events on {topic}" for pid in twice
            ]
            missing = sorted(expected_payments[topic] - set(seen))
            problems += [f"payment {pid} has no event on {topic}" for pid in missing]
            extra = sorted(set(seen) - expected_payments[topic])
            problems += [
                f"payment {pid} has an event on {topic} but is not in that state" for pid in extra
            ]
    problems += _check_dead_letter_topic(evidence)
    return _listed("wire", problems)


def _check_dead_letter_topic(evidence: Evidence) -> list[str]:
    sources: dict[tuple[bytes, bytes, bytes], dict[str, bytes]] = {}
    problems = []
    limit = evidence.settings.max_message_bytes
    for record in evidence.wire.get("dlq", []):
        headers = dict(record.headers)
        source = (
            headers.get("sakk.source.topic", b""),
            headers.get("sakk.source.partition", b""),
            headers.get("sakk.source.offset", b""),
        )
        sources[source] = headers
        if not headers.get("sakk.reason"):
            problems.append(f"dead letter at dlq offset {record.offset} carries no reason")
        if record.value is not None and len(record.value) > limit:
            problems.append(
                f"dead letter at dlq offset {record.offset} is {len(record.value)} "
                f"bytes, above {limit}"
            )
    if len(sources) != evidence.workload.poison:
        problems.append(
            f"dead-letter topic holds {len(sources)} distinct source messages, "
            f"{evidence.workload.poison} poison messages were published"
        )
    return problems


def check_notifications(
    conn: Connection,
    payments: Mapping[str, Any],
    ledger: LedgerSteps,
    evidence: Evidence,
    checked: Checked,
) -> list[str]:
    """Every notification DELIVERED, exactly once in effect.

    Every endpoint has recovered before the drain ends, so none may be given up
    (FAILED) or left PENDING. One notification per party per answered payment and per
    step (lifecycle_checks.check_notified), under its stable id; a successful attempt
    recorded for each; exactly one ``PaymentNotified`` for each on the wire (copies of
    that one event, byte-identical, are harmless), under the id derived from its cause,
    saying DELIVERED; and the bank accepted each one.
    """
    rows = {r.notification_id: r for r in conn.execute(select(Notification.__table__))}
    by_payment: dict[str, set[str]] = defaultdict(set)
    problems = []
    for nid, row in sorted(rows.items()):
        checked.notifications[row.status] += 1
        if row.outcome != CAP_ALERT:  # a bank's own alert, no payment's (risk_checks)
            by_payment[row.payment_id].add(nid)
        if row.status == N.FAILED:
            problems.append(
                f"notification {nid} to bank {row.recipient_bank} was given up (FAILED after "
                f"{row.attempts} attempts: {row.last_error}) though every endpoint recovered"
            )
        elif row.status != N.DELIVERED:
            problems.append(f"notification {nid} is still {row.status}")
    problems += check_notified(by_payment, payments, ledger, notification_id)
    problems += _check_successful_attempts(conn, rows)
    problems += _check_notified_events(rows, evidence)
    if evidence.webhook is not None:
        problems += _check_receiver(rows, evidence.webhook)
    return _listed("notification", problems)


def _check_successful_attempts(conn: Connection, rows: Mapping[str, Any]) -> list[str]:
    """A notification is DELIVERED in the transaction that records its successful attempt."""
    a = NotificationAttempt.__table__
    succeeded = set(
        conn.execute(select(a.c.notification_id).where(a.c.error.is_(None)).distinct()).scalars()
    )
    return [
        f"notification {nid} recorded DELIVERED without a successful attempt recorded"
        for nid, row in sorted(rows.items())
        if row.status == N.DELIVERED and nid not in succeeded
    ]


def _check_notified_events(rows: Mapping[str, Any], evidence: Evidence) -> list[str]:
    """One distinct ``PaymentNotified`` per finished notification: its finish, announced once."""
    notified, _conflicts, _copies = _distinct_ids(evidence.codec, evidence.wire.get("notified", []))
    events_of: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in notified.values():
        events_of[str(event["notification_id"])].append(event)
    problems = []
    for nid, row in sorted(rows.items()):
        events = events_of.get(nid, [])
        if not events:
            if row.status != N.PENDING:  # a PENDING one is reported as such
                problems.append(f"notification {nid} is {row.status}, no PaymentNotified says so")
            continue
        if len(events) > 1:
            problems.append(
                f"notification {nid} has {len(events)} distinct PaymentNotified events: "
                + ", ".join(sorted(str(e["event_id"]) for e in events))
            )
        expected_id = notified_event_id(row.source_event_id, row.recipient_bank, row.round)
        for event in events:
            if event["event_id"] != expected_id:
                problems.append(
                    f"PaymentNotified {event['event_id']} for {nid} does not have the id "
                    f"derived from its cause ({expected_id})"
                )
            if event["delivery_status"] != row.status:
                problems.append(
                    f"PaymentNotified for {nid} says {event['delivery_status']}, "
                    f"the ledger says {row.status}"
                )
    problems += [
        f"PaymentNotified for notification {nid}, unknown to the ledger"
        for nid in sorted(set(events_of) - set(rows))
    ]
    return problems


def check_latency(conn: Connection, evidence: Evidence, checked: Checked) -> list[str]:
    """The banks that stayed up were told within a bound, however long one bank was down."""
    split = LatencySplit.of(
        delivery_latencies(conn), evidence.down_bank, evidence.down_window, evidence.stage_faults
    )
    checked.latency = split
    if split.healthy_p99_s is None or split.healthy_p99_s <= HEALTHY_P99_BOUND_S:
        return []
    down = (
        f"; bank {split.down_bank}, down, p99 {_seconds(split.down_p99_s)}"
        if split.down_bank
        else ""
    )
    return [
        f"latency: the healthy banks' p99 delivery latency is {split.healthy_p99_s:.1f} s "
        f"over {split.healthy_count} notifications no stage-wide fault caught in flight, "
        f"above the {HEALTHY_P99_BOUND_S:.0f} s bound{down}"
    ]


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} s"


def _check_receiver(rows: Mapping[str, Any], log: WebhookLog) -> list[str]:
    problems = []
    if log.bad_signatures:
        problems.append(f"{log.bad_signatures} webhook requests with a bad signature")
    if log.wrong_recipient:
        problems.append(f"{log.wrong_recipient} webhook requests sent to another bank's URL")
    problems += [
        f"notification id {nid} arrived with different content" for nid in log.id_conflicts
    ]
    for nid, receipt in log.receipts.items():
        row = rows.get(nid)
        if row is None:
            problems.append(f"the bank received notification {nid}, unknown to the ledger")
        elif (row.payment_id, row.outcome, row.recipient_bank) != (
            receipt.payment_id,
            receipt.outcome,
            receipt.recipient_bank,
        ):
            problems.append(f"the bank received {nid} for another payment or outcome")
    for nid, row in rows.items():
        if row.status == N.DELIVERED and (
            nid not in log.receipts or not log.receipts[nid].accepted
        ):
            problems.append(f"notification {nid} recorded DELIVERED, the bank never accepted it")
    return problems


def _distinct_ids(
    codec: AvroCodec, records: list[WireRecord]
) -> tuple[dict[str, dict[str, Any]], list[str], int]:
    """(event id -> record, ids whose copies differ, copies beyond the first)."""
    events: dict[str, dict[str, Any]] = {}
    first_bytes: dict[str, bytes] = {}
    conflicts, copies = [], 0
    for r in records:
        try:
            record = codec.decode(r.value).record
        except DecodeError:
            continue
        eid = str(record["event_id"])
        if eid in events:
            copies += 1
            if first_bytes[eid] != r.value:
                conflicts.append(eid)
            continue
        events[eid] = record
        first_bytes[eid] = r.value or b""
    return events, conflicts, copies


def _undecodable(codec: AvroCodec, records: list[WireRecord]) -> int:
    count = 0
    for r in records:
        try:
            codec.decode(r.value)
        except DecodeError:
            count += 1
    return count
