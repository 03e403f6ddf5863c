"""Prometheus metrics and the health endpoints served beside them.

Labels are bounded sets only (consumer, topic, partition, channel, outcome,
reason code, bank code, currency, step kind): never a payment id, an account number or
a holder's name.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

from engine.domain.steps import MONEY_STEPS as MONEY_STEP_KINDS
from engine.domain.steps import REQUESTED_STEPS, STEPS, Money, StepKind

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

MESSAGES = Counter(
    "sakk_messages_total",
    "Messages a consumer handled, by outcome "
    "(validated, rejected, settled, failed, notified, duplicate, dead_lettered).",
    ["consumer", "topic", "outcome"],
)
PAYMENT_OUTCOMES = Counter(
    "sakk_payment_outcomes_total",
    "Payment decisions by stage, channel, outcome and ISO 20022 reason code ('' when none).",
    ["consumer", "channel", "outcome", "reason"],
)
SETTLED_AMOUNT = Counter(
    "sakk_settled_amount_minor_total",
    "Settled amount in minor units (centimes for MAD), by channel and currency.",
    ["channel", "currency"],
)
FEES = Counter(
    "sakk_fees_minor_total",
    "Fees taken in minor units, by channel and currency.",
    ["channel", "currency"],
)
BATCH_SECONDS = Histogram(
    "sakk_batch_processing_seconds",
    "Time to process one polled batch: decode, database transaction, produce, offset commit.",
    ["consumer"],
    buckets=LATENCY_BUCKETS_S,
)
BATCH_SIZE = Histogram(
    "sakk_batch_size_messages",
    "Messages per polled batch.",
    ["consumer"],
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000),
)
END_TO_END_SECONDS = Histogram(
    "sakk_end_to_end_seconds",
    "Time from the payment's initiation to this consumer's output.",
    ["consumer", "outcome"],
    buckets=LATENCY_BUCKETS_S,
)
DEAD_LETTERS = Counter(
    "sakk_dead_letters_total",
    "Messages sent to the dead-letter topic, by consumer, source topic and kind of fault.",
    ["consumer", "source_topic", "kind"],
)
SECURITY_REFUSALS = Counter(
    "sakk_security_refusals_total",
    "Messages dead-lettered before anything else for a security reason (bad or missing "
    "signature, unknown or revoked key, signer not the payer's bank). claimed_signer is the "
    "bank the message claimed, when it is a known bank; else 'unknown' (or '' when absent).",
    ["consumer", "claimed_signer", "reason"],
)
CONSUMER_LAG = Gauge(
    "sakk_consumer_lag_messages",
    "Messages between the consumer's position and the partition's end.",
    ["consumer", "topic", "partition"],
)
DEATHS_FOUND = Counter(
    "sakk_consumer_deaths_found_total",
    "Offsets found still in hand at a poll: a process died handling them (or was expelled).",
    ["consumer", "source_topic"],
)
POISON_QUARANTINED = Counter(
    "sakk_poison_quarantined_total",
    "Messages that killed their consumer process MAX_DEATHS times alone, dead-lettered unrun.",
    ["consumer", "source_topic"],
)
CORRUPT_BATCHES = Counter(
    "sakk_corrupt_record_batches_total",
    "Record batches the client could not read (CRC), dead-lettered and skipped.",
    ["consumer", "source_topic"],
)
CORRUPT_OFFSETS_SKIPPED = Counter(
    "sakk_corrupt_offsets_skipped_total",
    "Offsets skipped past unreadable record batches.",
    ["consumer", "source_topic"],
)
DB_RETRIES = Counter(
    "sakk_database_retries_total",
    "Batches retried because the database was unavailable.",
    ["consumer"],
)
BATCHES_SPLIT = Counter(
    "sakk_batches_split_total",
    "Batches that failed as a whole and were handled one message at a time.",
    ["consumer"],
)
PRODUCE_FAILURES = Counter(
    "sakk_produce_failures_total",
    "Batches whose events the broker did not acknowledge: offsets rewound, the batch redelivered.",
    ["consumer"],
)
OFFSET_COMMITS_REFUSED = Counter(
    "sakk_offset_commits_refused_total",
    "Offset commits the group refused after a rebalance (the new owner redelivers and dedupes).",
    ["consumer"],
)
NOTIFICATION_DELIVERIES = Counter(
    "sakk_notification_deliveries_total",
    "Notification attempts' consequences by sender: delivered, retry (rescheduled), "
    "failed (given up at the horizon).",
    ["sender", "status"],
)
NOTIFICATION_ATTEMPTS = Counter(
    "sakk_notification_attempts_total",
    "Notification delivery attempts by sender and result (ok, error).",
    ["sender", "result"],
)
NOTIFICATION_BODY_FAILURES = Counter(
    "sakk_notification_body_failures_total",
    "Notification attempts that failed before sending: the body (JSON or ISO 20022) "
    "could not be built.",
    ["recipient_bank"],
)
NOTIFICATIONS_GIVEN_UP = Counter(
    "sakk_notifications_given_up_total",
    "Notifications recorded FAILED: still undelivered at the retry horizon.",
    ["recipient_bank"],
)
NOTIFICATIONS_DUE = Gauge(
    "sakk_notifications_pending",
    "Notifications waiting for delivery (due now or scheduled for a retry), per bank, "
    "as seen by this dispatcher's last scan.",
    ["recipient_bank"],
)
NET_POSITION = Gauge(
    "sakk_bank_net_position_minor",
    "Net interbank position of a bank from what this settlement process posted since it "
    "started, minor units (positive: the switch owes the bank). Process-local: not the "
    "ledger's position per settlement window (sakk settlement report).",
    ["bank", "currency"],
)
# The lifecycle. ``bank`` is the bank whose customer pays in the step: the payer's bank
# for a capture, the payee's bank (which asked for it) for a refund or a return.
CAPTURES = Counter(
    "sakk_captures_total",
    "Captures applied (partial ones each count), by the payer's bank and channel.",
    ["bank", "channel"],
)
CAPTURED_AMOUNT = Counter(
    "sakk_captured_amount_minor_total",
    "Amount captured from holds, minor units, by the payer's bank, channel and currency.",
    ["bank", "channel", "currency"],
)
REFUNDS = Counter(
    "sakk_refunds_total",
    "Refunds applied, by the payee's bank (the one refunding) and channel.",
    ["bank", "channel"],
)
REFUNDED_AMOUNT = Counter(
    "sakk_refunded_amount_minor_total",
    "Amount refunded, minor units, by the payee's bank, channel and currency.",
    ["bank", "channel", "currency"],
)
RETURNS = Counter(
    "sakk_returns_total",
    "Returns applied, by the payee's bank (the one returning), channel and ISO 20022 "
    "return reason.",
    ["bank", "channel", "reason"],
)
RETURNED_AMOUNT = Counter(
    "sakk_returned_amount_minor_total",
    "Amount returned, minor units, by the payee's bank, channel and currency.",
    ["bank", "channel", "currency"],
)
HOLDS_OUTSTANDING = Gauge(
    "sakk_holds_outstanding",
    "Active holds (authorized, not yet captured in full, voided or expired), per payer's "
    "bank and currency, read from the ledger by each settlement process's expiry scheduler.",
    ["bank", "currency"],
)
HOLDS_OUTSTANDING_AMOUNT = Gauge(
    "sakk_holds_outstanding_minor",
    "What active holds still reserve (amount and fee), minor units, per payer's bank and "
    "currency, read from the ledger.",
    ["bank", "currency"],
)
HOLDS_OVERDUE = Gauge(
    "sakk_holds_overdue",
    "Active holds past their expiry time, from the ledger: their expiry is not applied yet.",
)
HOLDS_OVERDUE_OLDEST = Gauge(
    "sakk_holds_overdue_oldest_seconds",
    "How long the oldest active hold has been past its expiry time (0: none), from the "
    "ledger. Expiries are published every second: a few seconds is normal.",
)
BANK_CAP_USED = Gauge(
    "sakk_bank_cap_used_ratio",
    "Share of its net debit cap a bank uses (position and holds over the cap; 1 is the cap "
    "reached), per bank and currency, read from the ledger by each settlement process's "
    "expiry scheduler. Only banks with a cap.",
    ["bank", "currency"],
)
BANK_ALERT_RATIO = Gauge(
    "sakk_bank_cap_alert_ratio",
    "The share of its cap at which a bank chose to be alerted (its alert percentage / 100).",
    ["bank", "currency"],
)
HOLDS_REFRESHED = Gauge(
    "sakk_holds_refreshed_timestamp_seconds",
    "Unix time the hold gauges were last read from the ledger.",
)
# The outcomes of the steps banks (and the expiry scheduler) ask for, once applied.
STEP_OUTCOMES = frozenset(STEPS[k].outcome.value for k in REQUESTED_STEPS)
# (count, amount) of each step kind that moves money: every one in the catalog must have
# its two counters here (a KeyError at import says which does not).
_STEP_COUNTERS: Mapping[str, tuple[Counter, Counter]] = {
    StepKind.CAPTURE: (CAPTURES, CAPTURED_AMOUNT),
    StepKind.REFUND: (REFUNDS, REFUNDED_AMOUNT),
    StepKind.RETURN: (RETURNS, RETURNED_AMOUNT),
}
MONEY_STEPS: Mapping[str, tuple[Counter, Counter]] = {
    kind.value: _STEP_COUNTERS[kind] for kind in MONEY_STEP_KINDS
}

CONSUMER_READY = Gauge(
    "sakk_consumer_ready",
    "1 when the consumer is connected to broker and database and holds partitions.",
    ["consumer"],
)
LAST_PROGRESS = Gauge(
    "sakk_consumer_last_progress_timestamp_seconds",
    "Unix time of the consumer's last committed batch.",
    ["consumer"],
)


def observe_settled(events: Iterable[Mapping[str, Any]]) -> None:
    """Count a batch's PaymentSettled events (after its transaction committed).

    Summed per label set first: one update per series, not one per payment.
    """
    settled: defaultdict[tuple[str, str], int] = defaultdict(int)
    fees: defaultdict[tuple[str, str], int] = defaultdict(int)
    net: defaultdict[tuple[str, str], int] = defaultdict(int)
    for event in events:
        key, amount = (event["channel"], event["currency"]), event["amount_minor"]
        settled[key] += amount
        if event["fee_minor"]:
            fees[key] += event["fee_minor"]
        if event["payer_bank"] != event["payee_bank"]:
            net[(event["payer_bank"], event["currency"])] -= amount
            net[(event["payee_bank"], event["currency"])] += amount
    for (channel, currency), amount in settled.items():
        SETTLED_AMOUNT.labels(channel, currency).inc(amount)
    for (channel, currency), fee in fees.items():
        FEES.labels(channel, currency).inc(fee)
    for (bank, currency), change in net.items():
        NET_POSITION.labels(bank, currency).inc(change)


def observe_steps(events: Iterable[Mapping[str, Any]]) -> None:
    """Count a batch's applied steps (PaymentStepCompleted events, after their commit).

    The steps that move money (the catalog's): their counts and amounts, their fees, and
    the net positions, the way the catalog says the money goes (a capture as a payment; a
    refund or a return back). Voids and expiries move none (``sakk_payment_outcomes_total``
    counts them). A step that needs a reason (a return) is counted by it. Summed per label
    set first, as in :func:`observe_settled`.
    """
    counted: defaultdict[tuple[str, str, str, str], int] = defaultdict(int)
    amounts: defaultdict[tuple[str, str, str, str], int] = defaultdict(int)
    fees: defaultdict[tuple[str, str], int] = defaultdict(int)
    net: defaultdict[tuple[str, str], int] = defaultdict(int)
    for event in events:
        step, amount, currency = event["step"], event["amount_minor"], event["currency"]
        payer, payee, channel = event["payer_bank"], event["payee_bank"], event["channel"]
        if step not in MONEY_STEPS:
            continue
        paying, paid = (payer, payee) if _direction(step) is Money.TO_PAYEE else (payee, payer)
        counted[(step, paying, channel, event.get("reason_code") or "")] += 1
        amounts[(step, paying, channel, currency)] += amount
        if event["fee_minor"]:
            fees[(channel, currency)] += event["fee_minor"]
        if paying != paid:
            net[(paying, currency)] -= amount
            net[(paid, currency)] += amount
    for (step, bank, channel, reason), n in counted.items():
        if STEPS[StepKind(step)].needs_reason:
            MONEY_STEPS[step][0].labels(bank, channel, reason).inc(n)
        else:
            MONEY_STEPS[step][0].labels(bank, channel).inc(n)
    for (step, *labels), amount in amounts.items():
        MONEY_STEPS[step][1].labels(*labels).inc(amount)
    for (channel, currency), fee in fees.items():
        FEES.labels(channel, currency).inc(fee)
    for (bank, currency), change in net.items():
        if change:
            NET_POSITION.labels(bank, currency).inc(change)


def _direction(step: str) -> Money:
    return STEPS[StepKind(step)].money


class HoldGauges:
    """The hold gauges, set from one read of the ledger; a bank whose holds are all
    resolved since the last read goes back to zero rather than keeping its last value."""

    def __init__(self) -> None:
        self._seen: set[tuple[str, str]] = set()

    def set(
        self,
        rows: Iterable[tuple[str, str, int, int]],
        overdue: int,
        oldest_overdue_s: float,
        now: float,
    ) -> None:
        """``rows``: (bank, currency, active holds, reserved minor units)."""
        seen = set()
        for bank, currency, count, reserved in rows:
            HOLDS_OUTSTANDING.labels(bank, currency).set(count)
            HOLDS_OUTSTANDING_AMOUNT.labels(bank, currency).set(reserved)
            seen.add((bank, currency))
        for bank, currency in self._seen - seen:
            HOLDS_OUTSTANDING.labels(bank, currency).set(0)
            HOLDS_OUTSTANDING_AMOUNT.labels(bank, currency).set(0)
        self._seen |= seen
        HOLDS_OVERDUE.set(overdue)
        HOLDS_OVERDUE_OLDEST.set(oldest_overdue_s)
        HOLDS_REFRESHED.set(now)


def set_bank_caps(rows: Iterable[tuple[str, str, int, int]]) -> None:
    """``rows``: (bank, currency, share used in basis points, alert percentage)."""
    for bank, currency, used_bps, alert_percent in rows:
        BANK_CAP_USED.labels(bank, currency).set(used_bps / 10_000)  # a gauge: not money
        BANK_ALERT_RATIO.labels(bank, currency).set(alert_percent / 100)


class HealthState:
    """Liveness and readiness of the consumers in one process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ready: dict[str, bool] = {}
        self._alive = True

    def set_ready(self, consumer: str, ready: bool) -> None:
        with self._lock:
            self._ready[consumer] = ready
        CONSUMER_READY.labels(consumer).set(1 if ready else 0)

    def set_alive(self, alive: bool) -> None:
        with self._lock:
            self._alive = alive

    def snapshot(self) -> tuple[bool, dict[str, bool]]:
        with self._lock:
            return self._alive, dict(self._ready)


def _handler(health: HealthState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._reply(200, generate_latest(), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                alive, _ = health.snapshot()
                self._json(200 if alive else 503, {"alive": alive})
            elif path == "/readyz":
                alive, ready = health.snapshot()
                ok = alive and bool(ready) and all(ready.values())
                self._json(200 if ok else 503, {"ready": ok, "consumers": ready})
            else:
                self._json(
                    404, {"error": "not found", "paths": ["/metrics", "/healthz", "/readyz"]}
                )

        def _json(self, status: int, body: dict) -> None:
            self._reply(status, json.dumps(body).encode(), "application/json")

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            return  # scrapes every few seconds would flood the log

    return Handler


class MetricsServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` on one port, in a daemon thread."""

    def __init__(self, host: str, port: int, health: HealthState) -> None:
        self._server = ThreadingHTTPServer((host, port), _handler(health))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics-http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def serve_metrics(host: str, port: int, health: HealthState) -> MetricsServer | None:
    """Start the metrics server; port 0 in settings means no server at all."""
    if port == 0:
        return None
    return MetricsServer(host, port, health).start()
