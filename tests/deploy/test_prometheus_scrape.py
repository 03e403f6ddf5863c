"""A real Prometheus scrapes a real Sakk flow: the series of the dashboard and alerts exist,
they move as payments flow, and every alert rule evaluates without error.

The flow is the CLI an operator runs (`python -m sakk ...`) against an embedded broker
started here, so the consumers and the simulator share it, and a SQLite ledger.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.config import PREFIX, load_settings
from engine.kafka.client import Outgoing, make_producer, send_all
from engine.kafka.embedded import EmbeddedBroker
from engine.ledger.reference import read_file
from tests.deploy.support import (
    ALERTS_FILE,
    CONSUMERS,
    PROMETHEUS_CONFIG,
    ROOT,
    SCRAPE_JOB,
    PrometheusServer,
    alert_rules,
    as_plain_promql,
    dashboard_exprs,
    free_port,
    load_yaml,
    metric_names_in,
    tail,
)
from tooling.workload.traffic import register_simulated_keys, simulation_signers

pytestmark = pytest.mark.integration

PAYMENTS = 300
RATE_PER_S = 100  # spread over a few scrapes, so the counters are seen climbing
COMMAND_TIMEOUT_S = 180
READY_TIMEOUT_S = 90
FLOW_TIMEOUT_S = 180
STOP_TIMEOUT_S = 20
REFERENCE_FILE = ROOT / "reference" / "morocco.json"
# Series that only appear when something goes wrong, or that depend on the traffic mix.
ONLY_ON_FAULTS = {
    "sakk_database_retries_total",
    "sakk_notifications_given_up_total",
    "sakk_poison_quarantined_total",  # a consumer killed three times by one message
    "sakk_corrupt_record_batches_total",  # a record batch failing its CRC
    "sakk_notification_body_failures_total",  # a notification body that could not be built
}
MIX_DEPENDENT = {
    "sakk_fees_minor_total",
    # A few hundred simulated messages bring a handful of refunds and maybe no return, and
    # their holds are mostly captured before the 5-second read of the hold gauges.
    "sakk_holds_outstanding",
    "sakk_holds_outstanding_minor",
    "sakk_refunds_total",
    "sakk_refunded_amount_minor_total",
    "sakk_returns_total",
    "sakk_returned_amount_minor_total",
}
LABEL_VALUES = re.compile(r"label_values\((?P<metric>[^,]+),\s*(?P<label>\w+)\)")
AVAILABILITY_ALERTS = {"SakkConsumerDown", "SakkConsumerNotReady", "SakkConsumerMissing"}
# A one-second scrape needs a rate window of a few samples.
SUBSTITUTIONS = {
    "$__rate_interval": "15s",
    "$__interval": "1s",
    "$__range": "5m",
    "$consumer": ".*",
    "$channel": ".*",
}


@dataclass
class SakkFlow:
    """The consumers of `sakk run all`, serving metrics on ``metrics_port``."""

    env: dict[str, str]
    metrics_port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    def sakk(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_sakk(self.env, *args)


def run_sakk(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "sakk", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
    )
    if result.returncode != 0:
        pytest.fail(
            f"`sakk {' '.join(args)}` exited {result.returncode}\n{result.stdout}\n{result.stderr}"
        )
    return result


@pytest.fixture
def embedded_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(log_path=tmp_path / "broker.log") as broker:
        yield broker


@pytest.fixture
def sakk_flow(embedded_broker: EmbeddedBroker, tmp_path: Path) -> Iterator[SakkFlow]:
    """Ledger migrated, reference accounts loaded, topics created, `sakk run all` ready."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(PREFIX)}
    env.update(
        {
            "SAKK_KAFKA_BOOTSTRAP_SERVERS": embedded_broker.bootstrap_servers,
            "SAKK_DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
            "SAKK_DATA_DIR": str(tmp_path / "var"),
            "SAKK_NOTIFY_LOG_PATH": str(tmp_path / "notifications.jsonl"),
            "SAKK_TOPIC_PARTITIONS": "3",
            "SAKK_SHUTDOWN_TIMEOUT_S": "10",
            "SAKK_METRICS_PORT": "0",  # one-shot commands serve no metrics
        }
    )
    run_sakk(env, "db", "upgrade")
    run_sakk(env, "accounts", "load", str(REFERENCE_FILE))
    run_sakk(env, "topics", "create")

    metrics_port = free_port()
    log_path = tmp_path / "run-all.log"
    run_env = {**env, "SAKK_METRICS_PORT": str(metrics_port)}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "sakk", "run", "all"],
            env=run_env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    flow = SakkFlow(env, metrics_port, process, log_path)
    try:
        wait_until_ready(flow)
        yield flow
    finally:
        stop(process)


def wait_until_ready(flow: SakkFlow) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    url = f"http://127.0.0.1:{flow.metrics_port}/readyz"
    while time.monotonic() < deadline:
        if flow.process.poll() is not None:
            pytest.fail(
                f"`sakk run all` exited with {flow.process.returncode}\n{tail(flow.log_path)}"
            )
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    pytest.fail(f"`sakk run all` not ready after {READY_TIMEOUT_S}s\n{tail(flow.log_path)}")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT_S)


def publish_poison(flow: SakkFlow) -> None:
    """One undecodable message signed by its bank, and one unsigned (refused for security),
    so the dead-letter and security series and alerts have something to show."""
    settings = load_settings(environ=flow.env)
    signers = simulation_signers(read_file(REFERENCE_FILE), seed=1)  # `sakk simulate`'s keys
    register_simulated_keys(settings, signers)
    topic, value = settings.topic("initiated"), b"\x00not avro"
    producer = make_producer(settings, client_id="test-poison")
    try:
        send_all(
            producer,
            [
                Outgoing(topic, b"poison", value, signers.headers("007", topic, b"poison", value)),
                Outgoing(topic, b"forged", value),
            ],
            timeout_s=30,
        )
    finally:
        producer.close()


def total(prometheus: PrometheusServer, selector: str) -> float:
    return prometheus.scalar(f"sum({selector}) or vector(0)") or 0.0


def referenced_metrics() -> set[str]:
    names: set[str] = set()
    for _, expr in dashboard_exprs():
        names |= metric_names_in(expr)
    for rule in alert_rules():
        names |= metric_names_in(rule["expr"])
    return names


def expects_data(expr: str) -> bool:
    """Whether a dashboard query must return series after a fault-free flow of payments."""
    names = metric_names_in(expr)
    if names & (ONLY_ON_FAULTS | MIX_DEPENDENT):
        return False
    return not re.search(r'outcome=~?"(rejected|failed)', expr)


def test_test_job_is_named_like_the_deployed_scrape_job() -> None:
    jobs = [job["job_name"] for job in load_yaml(PROMETHEUS_CONFIG)["scrape_configs"]]
    assert SCRAPE_JOB in jobs


def test_prometheus_sees_the_series_of_the_dashboard_and_alerts_move_as_payments_flow(
    sakk_flow: SakkFlow, prometheus_factory: Callable[..., PrometheusServer]
) -> None:
    prometheus = prometheus_factory(
        [f"127.0.0.1:{sakk_flow.metrics_port}"], rule_files=[ALERTS_FILE]
    )

    def diagnose() -> str:
        return f"{tail(sakk_flow.log_path)}\n{tail(prometheus.log_path)}"

    # Every consumer ready, seen through Prometheus, under the names the alerts use.
    prometheus.wait_for(
        "scrape of the Sakk process with all three consumers ready",
        lambda: (
            total(prometheus, f'up{{job="{SCRAPE_JOB}"}}') == 1
            and {r["metric"].get("consumer") for r in prometheus.query("sakk_consumer_ready == 1")}
            == set(CONSUMERS)
        ),
        READY_TIMEOUT_S,
        diagnose,
    )

    started = time.time()
    before = total(prometheus, "sakk_messages_total")
    publish_poison(sakk_flow)
    sakk_flow.sakk("simulate", "--payments", str(PAYMENTS), "--rate", str(RATE_PER_S))

    prometheus.wait_for(
        f"validator decisions on all {PAYMENTS} payments",
        lambda: total(prometheus, 'sakk_messages_total{consumer="validator"}') >= PAYMENTS,
        FLOW_TIMEOUT_S,
        diagnose,
    )
    prometheus.wait_for(
        "messages through settlement and notification",
        lambda: all(
            total(prometheus, f'sakk_messages_total{{consumer="{c}"}}') > 0
            for c in ("settlement", "notification")
        ),
        FLOW_TIMEOUT_S,
        diagnose,
    )
    prometheus.wait_for(
        "the poison message counted as a dead letter",
        lambda: total(prometheus, 'sakk_dead_letters_total{consumer="validator"}') >= 1,
        FLOW_TIMEOUT_S,
        diagnose,
    )

    # The counters climbed while the payments flowed, and never went back.
    samples = prometheus.query_range(
        "sum(sakk_messages_total) or vector(0)", start=started, end=time.time(), step_s=1
    )
    values = [float(v) for _, v in samples[0]["values"]]
    assert values[-1] > before, f"sakk_messages_total did not move: {values}"
    assert values == sorted(values), f"sakk_messages_total went down: {values}"
    assert len(set(values)) > 2, f"seen in fewer than three steps, not flowing: {values}"

    # Every series the dashboard and the alerts name exists (bar those that need a fault).
    required = referenced_metrics() - ONLY_ON_FAULTS - MIX_DEPENDENT
    prometheus.wait_for(
        "every series the dashboard and alerts use",
        lambda: not [m for m in required if not prometheus.query(f"count({m})")],
        FLOW_TIMEOUT_S,
        lambda: (
            "missing: "
            + ", ".join(sorted(m for m in required if not prometheus.query(f"count({m})")))
        ),
    )

    # Every dashboard query evaluates, and those about the normal flow show data; the
    # filters (template variables) offer values.
    empty = []
    for where, expr in dashboard_exprs():
        variable = LABEL_VALUES.fullmatch(expr)
        if variable:
            expr = f"count by ({variable['label']}) ({variable['metric']})"
        result = prometheus.query(as_plain_promql(expr, SUBSTITUTIONS))
        if expects_data(expr) and not result:
            empty.append(where)
    assert not empty, f"dashboard queries with no data after the flow: {empty}"

    # Every alert rule evaluated without error, and the dead letter raised its alert.
    def rules_evaluated() -> bool:
        rules = [r for g in prometheus.get("/api/v1/rules")["groups"] for r in g["rules"]]
        return len(rules) == len(alert_rules()) and all(r["health"] != "unknown" for r in rules)

    prometheus.wait_for("one evaluation of every alert rule", rules_evaluated, 30, diagnose)
    unhealthy = [
        (r["name"], r.get("lastError"))
        for g in prometheus.get("/api/v1/rules")["groups"]
        for r in g["rules"]
        if r["health"] != "ok"
    ]
    assert not unhealthy, unhealthy
    prometheus.wait_for(
        "SakkDeadLetters firing for the validator",
        lambda: any(
            a["labels"]["alertname"] == "SakkDeadLetters"
            and a["state"] == "firing"
            and a["labels"].get("consumer") == "validator"
            for a in prometheus.get("/api/v1/alerts")["alerts"]
        ),
        30,
        diagnose,
    )
    down = [
        a["labels"]["alertname"]
        for a in prometheus.get("/api/v1/alerts")["alerts"]
        if a["state"] == "firing" and a["labels"]["alertname"] in AVAILABILITY_ALERTS
    ]
    assert not down, f"availability alerts on a healthy flow: {down}"
