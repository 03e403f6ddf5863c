"""The interbank risk invariants of a chaos run, checked after the drain.

- **Limits held**: no bank's exposure (its position, everything posted less what settled
  windows settled, plus its interbank holds) is beyond its net debit cap or its liquidity,
  in its final ``bank_positions`` row; each row's liquidity is its liquidity account's
  balance; the product's auditor (``engine.audit.settled_windows``: rows equal the
  ledger, positions equal unsettled nets, lifecycle rows chained, settled windows
  unchanged) finds nothing. Where the ledger journals each position change
  (``position_changes``), every change that added exposure or took liquidity is checked
  against the limits it was decided under, in write order.
- **Nets sum to zero**: every window's nets, closed (as recorded) or not (as the ledger
  gives them now), sum to zero per currency.
- **Settled windows match**: each SETTLED window's settled nets equal its confirmation
  (the pacs.002 the run sent), its instruction (the pacs.009), the nets its close
  recorded and the nets the ledger gives now; the window the run settled is SETTLED.
- **Refusals told**: every payment refused for a cap (``AM23``) or for liquidity
  (``AM04``) says which limit, and its payer's bank was notified (DELIVERED, accepted by
  its endpoint); every cap alert went to its own bank.
- **Movements as they had to be**: each ``FundsIn`` / ``FundsOut`` the run issued was
  decided as expected, the uncovering withdrawal refused ``AM04`` though it was less than
  the deposit, and each posted one has its posting.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, column, inspect, select, table

from engine.audit.settled_windows import check_settled_windows
from engine.audit.window_lifecycle import window_settlements, window_states
from engine.audit.window_settlement import parties_of
from engine.config import Settings
from engine.domain.notifications import CAP_ALERT
from engine.domain.notifications import NotificationStatus as N
from engine.iso.amounts import to_minor
from engine.iso.errors import IsoError
from engine.iso.safe_xml import parse
from engine.ledger.models import (
    LiquidityMovement,
    Notification,
    Posting,
    SettlementWindowPosition,
    table_of,
)
from engine.ledger.positions import liquidity_balances, read_banks
from engine.read.positions import all_window_reports
from engine.risk.confirmation import read_confirmation
from engine.risk.instruction import PACS_009, Parties
from engine.risk.limits import CAP_EXCEEDED, INSUFFICIENT_LIQUIDITY
from engine.risk.windows import WindowState
from tooling.chaos.faults import WebhookLog
from tooling.chaos.operator import OperatorRun
from tooling.workload.chaos import Workload

LIMIT_REASONS = {CAP_EXCEEDED: "net debit cap", INSUFFICIENT_LIQUIDITY: "prefunded liquidity"}
Key = tuple[str, str]
JOURNAL = "position_changes"
JOURNAL_COLUMNS = frozenset({
    "bank_code", "currency", "posted_delta_minor", "holds_delta_minor", "liquidity_delta_minor",
    "exposure_after_minor", "liquidity_after_minor", "cap_minor", "settled_minor",
})  # fmt: skip


@dataclass
class RiskChecked:
    """What the risk checks looked at: the report's figures."""

    refusals: Counter[str] = field(default_factory=Counter)  # "901 AM23" -> pressing payments
    settled: Counter[str] = field(default_factory=Counter)  # bank -> pressing payments settled
    told: int = 0  # refusals whose notification reached the payer's bank
    cap_alerts: Counter[str] = field(default_factory=Counter)  # bank -> alerts delivered
    movements: Counter[str] = field(default_factory=Counter)  # "FundsIn POSTED" -> count
    windows: dict[str, str] = field(default_factory=dict)  # label -> state
    settled_nets: dict[str, int] = field(default_factory=dict)  # "bank cur" -> net settled
    positions: dict[str, dict[str, int]] = field(default_factory=dict)  # bank -> figures
    journal: int | None = None  # position changes checked (None: not journaled)


def check_risk(
    conn: Connection, settings: Settings, workload: Workload, operator: OperatorRun | None,
    webhook: WebhookLog | None, payments: Mapping[str, Any], checked: RiskChecked,
) -> list[str]:  # fmt: skip
    """Every risk invariant's violations (see the module's docstring)."""
    problems = check_limits(conn, checked) + check_journal(conn, checked) + check_nets(conn)
    problems += check_settled(conn, settings, operator, checked)
    problems += check_refusals(conn, workload, payments, webhook, checked)
    problems += check_movements(conn, operator, checked)
    if operator is not None:
        problems += [f"operator: {e}" for e in operator.errors]
    return problems


def check_limits(conn: Connection, checked: RiskChecked) -> list[str]:
    problems = []
    held = liquidity_balances(conn)
    for (bank, cur), row in sorted(read_banks(conn).items()):
        exposure = row.exposure.total_minor
        if row.cap_minor is not None:
            checked.positions[f"{bank} {cur}"] = {
                "exposure_minor": exposure, "cap_minor": row.cap_minor,
                "liquidity_minor": row.liquidity_minor,
            }  # fmt: skip
            if exposure > row.cap_minor:
                problems.append(
                    f"bank {bank} {cur}: exposure {exposure} beyond its cap {row.cap_minor}"
                )
            if exposure > row.liquidity_minor:
                problems.append(
                    f"bank {bank} {cur}: exposure {exposure} beyond its liquidity "
                    f"{row.liquidity_minor}"
                )
        if row.liquidity_minor != held.get((bank, cur), 0):
            problems.append(
                f"bank {bank} {cur}: position row says liquidity "
                f"{row.liquidity_minor}, its account holds {held.get((bank, cur))}"
            )
    problems += check_settled_windows(conn).problems  # the product's auditor
    return problems


def check_journal(conn: Connection, checked: RiskChecked) -> list[str]:
    """Each journaled change that added exposure or took liquidity, within its limits."""
    inspector = inspect(conn)
    if not inspector.has_table(JOURNAL):
        return []
    columns = {c["name"] for c in inspector.get_columns(JOURNAL)}
    if not columns >= JOURNAL_COLUMNS:
        return [f"{JOURNAL} lacks {sorted(JOURNAL_COLUMNS - columns)}: cannot walk it"]
    t = table(JOURNAL, *(column(c) for c in sorted(JOURNAL_COLUMNS | {"id"})))
    problems, count = [], 0
    for r in conn.execute(select(t).order_by(t.c.id)):
        count += 1
        if r.cap_minor is None:
            continue
        adds = r.posted_delta_minor + r.holds_delta_minor > 0
        exposure = r.exposure_after_minor - r.settled_minor
        if adds and exposure > r.cap_minor:
            problems.append(
                f"{JOURNAL} #{r.id}: bank {r.bank_code} {r.currency} exposure "
                f"{exposure} beyond its cap {r.cap_minor}"
            )
        if (adds or r.liquidity_delta_minor < 0) and exposure > r.liquidity_after_minor:
            problems.append(
                f"{JOURNAL} #{r.id}: bank {r.bank_code} {r.currency} exposure "
                f"{exposure} beyond its liquidity {r.liquidity_after_minor}"
            )
    checked.journal = count
    return problems


def check_nets(conn: Connection) -> list[str]:
    """Every window's nets sum to zero per currency: as closed, and as the ledger says now."""
    t = table_of(SettlementWindowPosition)
    sums: dict[tuple[str, str], int] = defaultdict(int)
    for label, cur, net in conn.execute(select(t.c.label, t.c.currency, t.c.net_minor)):
        sums[(label, cur)] += int(net)
    problems = [
        f"closed window {label}: nets sum to {total} {cur}, not zero"
        for (label, cur), total in sorted(sums.items())
        if total
    ]
    for report in all_window_reports(conn):
        problems += [
            f"window {report.window.label}: the ledger's nets sum to {total} {cur}"
            for cur, total in sorted(report.net_by_currency().items())
            if total
        ]
    return problems


def check_settled(
    conn: Connection, settings: Settings, operator: OperatorRun | None, checked: RiskChecked
) -> list[str]:
    """Each SETTLED window's settled nets = its confirmation = its instruction = its close
    = the ledger now; the window the run settled is SETTLED."""
    states = window_states(conn)
    checked.windows = {label: str(r.state) for label, r in sorted(states.items())}
    settled = window_settlements(conn)
    closes = _close_nets(conn)
    now = {r.window.label: {(x.bank_code, x.currency): -x.net_minor for x in r.lines if x.net_minor}
           for r in all_window_reports(conn)}  # fmt: skip
    problems = []
    for label, record in sorted(states.items()):
        if record.state is not WindowState.SETTLED:
            continue
        mine = settled.get(label, {})
        checked.settled_nets.update({f"{b} {c}": n for (b, c), n in mine.items()})
        for what, other in (("its close recorded", closes.get(label, {})),
                            ("the ledger gives now", now.get(label, {}))):  # fmt: skip
            if mine != other:
                problems.append(
                    f"settled window {label}: settled {_shown(mine)}, {what} {_shown(other)}"
                )
    if operator is None or not operator.window.label:
        return problems
    run = operator.window
    if states.get(run.label) is None or states[run.label].state is not WindowState.SETTLED:
        problems.append(
            f"window {run.label} was closed, settled and confirmed by the run, "
            f"but is {states.get(run.label)}"
        )
        return problems
    documents = _document_nets(conn, settings, run.instructions, run.confirmations)
    for what, nets in documents.items():
        if nets != settled.get(run.label, {}):
            problems.append(
                f"settled window {run.label}: settled "
                f"{_shown(settled.get(run.label, {}))}, {what} says {_shown(nets)}"
            )
    return problems


def _close_nets(conn: Connection) -> dict[str, dict[Key, int]]:
    t = table_of(SettlementWindowPosition)
    nets: dict[str, dict[Key, int]] = defaultdict(dict)
    for label, bank, cur, net in conn.execute(
        select(t.c.label, t.c.bank_code, t.c.currency, t.c.net_minor)
    ):
        if net:
            nets[label][(bank, cur)] = -int(net)
    return nets


def _document_nets(
    conn: Connection, settings: Settings, instructions: Mapping[str, bytes],
    confirmations: Mapping[str, bytes],
) -> dict[str, dict[Key, int]]:  # fmt: skip
    """The nets the pacs.009 instructions and the pacs.002 confirmations carry."""
    parties = parties_of(
        conn, settings.settlement_switch_code, settings.settlement_bank_code,
        settings.settlement_clearing_system,
    )  # fmt: skip
    out: dict[str, dict[Key, int]] = {"its confirmation": {}, "its instruction": {}}
    for cur, data in confirmations.items():
        try:
            lines = read_confirmation(data, parties).lines
        except IsoError as exc:
            out["its confirmation"][("unreadable", cur)] = 0
            out[f"its confirmation ({exc})"] = {}
            continue
        for line in lines:
            out["its confirmation"][(str(line.bank), str(line.currency))] = int(line.net_minor or 0)
    for cur, data in instructions.items():
        for bank, net in _instructed(data, parties).items():
            out["its instruction"][(bank, cur)] = net
    return out


def _instructed(data: bytes, parties: Parties) -> dict[str, int]:
    """Each bank's net in a pacs.009, position sign (+ when the bank is the debtor)."""
    ns = {"p": PACS_009.namespace}
    by_bic = {bic: code for code, bic in parties.bics.items() if bic}

    def code(agent: Any) -> str:
        bic = agent.findtext("p:FinInstnId/p:BICFI", namespaces=ns)
        return by_bic.get(bic, bic) if bic else agent.findtext(
            "p:FinInstnId/p:ClrSysMmbId/p:MmbId", namespaces=ns
        )  # fmt: skip

    nets: dict[str, int] = {}
    for tx in parse(data).getroot().iterfind("p:FICdtTrf/p:CdtTrfTxInf", namespaces=ns):
        amount = tx.find("p:IntrBkSttlmAmt", namespaces=ns)
        minor = to_minor(amount.text, amount.get("Ccy"))
        debtor, creditor = code(tx.find("p:Dbtr", ns)), code(tx.find("p:Cdtr", ns))
        if debtor == parties.switch:
            nets[creditor] = nets.get(creditor, 0) - minor
        else:
            nets[debtor] = nets.get(debtor, 0) + minor
    return nets


def check_refusals(
    conn: Connection, workload: Workload, payments: Mapping[str, Any],
    webhook: WebhookLog | None, checked: RiskChecked,
) -> list[str]:  # fmt: skip
    """Each payment refused for a limit says which, and its payer's bank was told."""
    n = table_of(Notification)
    told: dict[str, list[Any]] = defaultdict(list)
    problems = []
    for note in conn.execute(select(n)):
        told[note.payment_id].append(note)
        if note.outcome == CAP_ALERT:
            checked.cap_alerts[note.recipient_bank] += note.status == N.DELIVERED
            if not note.payment_id.startswith(f"cap:{note.recipient_bank}:"):
                problems.append(
                    f"cap alert {note.notification_id} for {note.payment_id} went to bank "
                    f"{note.recipient_bank}"
                )
    pressing = {pid for pid, e in workload.payments.items() if e.label.startswith("pressing_")}
    for pid in sorted(pressing):
        row = payments.get(pid)
        if row is None:
            continue
        if row.state == "SETTLED":
            checked.settled[row.payer_bank] += 1
        if row.state != "FAILED" or row.reason_code not in LIMIT_REASONS:
            continue
        checked.refusals[f"{row.payer_bank} {row.reason_code}"] += 1
        if LIMIT_REASONS[row.reason_code] not in (row.reason_message or ""):
            problems.append(
                f"payment {pid} refused {row.reason_code} does not name its limit: "
                f"{row.reason_message!r}"
            )
        found = [x for x in told.get(pid, []) if x.recipient_bank == row.payer_bank]
        delivered = [x for x in found if x.outcome == "FAILED" and x.status == N.DELIVERED]
        accepted = webhook is None or any(
            (r := webhook.receipts.get(x.notification_id)) is not None and r.accepted
            for x in delivered
        )
        if delivered and accepted:
            checked.told += 1
        else:
            problems.append(
                f"payment {pid} refused {row.reason_code}: its payer's bank "
                f"{row.payer_bank} was not told ({[x.status for x in found]})"
            )
    return problems


def check_movements(
    conn: Connection, operator: OperatorRun | None, checked: RiskChecked
) -> list[str]:
    """Each movement the run issued decided as it had to be, posted ones with a posting."""
    m, p = table_of(LiquidityMovement), table_of(Posting)
    rows = {r.movement_id: r for r in conn.execute(select(m))}
    postings = set(conn.execute(select(p.c.posting_id).where(
        p.c.kind.in_(("FUNDS_IN", "FUNDS_OUT"))
    )).scalars())  # fmt: skip
    problems = []
    for movement_id, row in sorted(rows.items()):
        checked.movements[f"{_kind(row.kind)} {row.outcome}"] += 1
        if row.outcome == "POSTED" and row.posting_id not in postings:
            problems.append(f"movement {movement_id} POSTED without its posting")
        if row.outcome != "POSTED" and row.posting_id is not None:
            problems.append(f"movement {movement_id} {row.outcome} has a posting")
    for mv in operator.movements if operator else []:
        decided = rows.get(mv.movement_id)
        got = None if decided is None else (decided.outcome, decided.reason_code)
        wanted = (mv.expected, INSUFFICIENT_LIQUIDITY if mv.expected == "REFUSED" else None)
        if got != wanted:
            problems.append(
                f"{mv.kind} of {mv.amount_minor} for bank {mv.bank} is {got}, "
                f"expected {wanted}: {mv.why}"
            )
        if mv.expected == "REFUSED" and not (
            mv.liquidity_before_minor is not None and mv.amount_minor <= mv.liquidity_before_minor
        ):
            problems.append(
                f"the refused {mv.kind} for bank {mv.bank} asked for more than "
                f"its deposit: it proves nothing of its position"
            )
    return problems


def _kind(kind: str) -> str:
    return {"FUNDS_IN": "FundsIn", "FUNDS_OUT": "FundsOut"}.get(kind, kind)


def _shown(nets: Mapping[Key, int]) -> str:
    return "{" + ", ".join(f"{b} {c}: {n}" for (b, c), n in sorted(nets.items())) + "}"
