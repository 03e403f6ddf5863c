"""Dead letters fixed and sent again through the embedded broker, on SQLite and PostgreSQL.

Each test runs the validator and settlement as threads on its own topics; an operator
fixes the cause (a schema registered late, a bank's corrected message) and redrives.
The copy must settle, a second redrive must change nothing, and every message the bank
published must be counted once: ``published = terminal + dead-lettered``.
"""

from __future__ import annotations

import base64
import functools
import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from kafka import TopicPartition
from sqlalchemy import func, select

import sakk.cli.dlq
import sakk.cli.trace  # noqa: F401  (each module registers its command on ``cli``)
from engine.audit.trace import trace_payment
from engine.config import PROJECT_ROOT
from engine.dlq.redrive import Redriver
from engine.kafka.client import make_consumer
from engine.ledger.checks import FlowCounts, flow_counts
from engine.ledger.dead_letters import DeadLetterRecord, list_dead_letters
from engine.ledger.models import DeadLetterRedrive, HandledEvent, Payment
from engine.ledger.schemas import ApprovalStatus, approve
from engine.read.audience import Audience
from engine.serialization import AvroCodec, SchemaRegistry, read_release_schemas
from sakk.app import TOPOLOGY, make_codec
from sakk.cli import cli
from tests.conftest import Flow
from tests.factories import AMINA, KARIM, payment, signed, switch_id

pytestmark = pytest.mark.integration

KEY = AMINA[1].encode()
STAGES = ("validator", "settlement")  # notification plays no part in a redrive
SCHEMA_REFRESH_S = 0.001  # far below any redrive's own round trip (ledger, broker)
READ_TIMEOUT_S = 30.0
MAX_MESSAGE_BYTES = 128 * 1024  # so dead-letter copies are cut at 64 KiB


@pytest.fixture
def quick_schema_lookups(monkeypatch: pytest.MonkeyPatch) -> None:
    """Consumers ask for new approvals at most every 5 s; tests wait less.

    The behaviour is the same: a consumer that met the fingerprint looks again once the
    interval has passed, and a copy redriven sooner is dead-lettered again (so
    docs/operations.md tells operators to wait that long).
    """
    monkeypatch.setattr(
        "sakk.app.AvroCodec",
        functools.partial(AvroCodec, approval_check_interval_s=SCHEMA_REFRESH_S),
    )


def newer_writer(tmp_path: Path) -> tuple[dict[str, Any], AvroCodec]:
    """A bank's newer publisher: PaymentInitiated with an added optional ``device_id``."""
    newer = tmp_path / "schemas-v2"
    shutil.copytree(PROJECT_ROOT / "schemas", newer)
    path = newer / "payment_initiated.avsc"
    schema = json.loads(path.read_text())
    schema["fields"].append({"name": "device_id", "type": ["null", "string"], "default": None})
    path.write_text(json.dumps(schema))
    return schema, AvroCodec(SchemaRegistry.from_dir(newer))


def release_schemas() -> dict[str, dict[str, Any]]:
    return {k: json.loads(v) for k, v in read_release_schemas(PROJECT_ROOT / "schemas").items()}


def dead_letters(flow: Flow) -> list[DeadLetterRecord]:
    with flow.engine.connect() as conn:
        return list_dead_letters(conn)


def state_of(flow: Flow, record: dict[str, Any]) -> str | None:
    with flow.engine.connect() as conn:
        return conn.scalar(select(Payment.state).where(Payment.payment_id == switch_id(record)))


def counts(flow: Flow) -> FlowCounts:
    with flow.engine.connect() as conn:
        return flow_counts(conn, TOPOLOGY.entry.name)


def ledger_rows(flow: Flow) -> tuple[int, int, list[Any]]:
    """What a redrive could change: events the validator handled, payments, redrive rows."""
    with flow.engine.connect() as conn:
        handled = conn.scalar(
            select(func.count())
            .select_from(HandledEvent)
            .where(HandledEvent.consumer == "validator")
        )
        payments = conn.scalar(select(func.count()).select_from(Payment))
        redrives = list(conn.execute(select(DeadLetterRedrive.__table__)).all())
    return int(handled or 0), int(payments or 0), redrives


def corrected_files(flow: Flow, tmp_path: Path, record: dict[str, Any]) -> tuple[str, ...]:
    """What a bank sends the operator: its corrected message as JSON, and its signature."""
    body = tmp_path / "corrected.json"
    body.write_text(json.dumps({**record, "occurred_at": record["occurred_at"].isoformat()}))
    value = flow.codec.encode("PaymentInitiated", record)
    headers = dict(signed(flow.settings.topic("initiated"), KEY, value, record["payer_bank"]))
    signature = tmp_path / "signature.json"
    signature.write_text(
        json.dumps(
            {
                "sakk.signer": headers["sakk.signer"].decode(),
                "sakk.key_id": headers["sakk.key_id"].decode(),
                "sakk.signature": base64.b64encode(headers["sakk.signature"]).decode(),
            }
        )
    )
    return "--body", str(body), "--signature", str(signature)


def read_partition_until(flow: Flow, partition: int, event_id: str) -> list[Any]:
    """Every record of payments.initiated's ``partition`` up to the one holding ``event_id``."""
    codec = make_codec(flow.settings, flow.engine)
    consumer = make_consumer(flow.settings, group_id=None, client_id="test-reader")
    tp = TopicPartition(flow.settings.topic("initiated"), partition)
    records: list[Any] = []
    try:
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        deadline = time.monotonic() + READ_TIMEOUT_S
        while time.monotonic() < deadline:
            for r in consumer.poll(timeout_ms=200).get(tp, []):
                records.append(r)
                if codec.decode(r.value).record["event_id"] == event_id:
                    return records
        raise AssertionError(f"event {event_id} not on {tp} within {READ_TIMEOUT_S:.0f}s")
    finally:
        consumer.close(autocommit=False)


@pytest.fixture
def sakk(tmp_path: Path) -> Iterator[Callable[..., Callable[..., tuple[int, str]]]]:
    """``sakk`` run in-process against a flow's broker, topics and ledger."""

    def bind(flow: Flow, **extra_env: str) -> Callable[..., tuple[int, str]]:
        s = flow.settings
        env = {
            "SAKK_KAFKA_BOOTSTRAP_SERVERS": s.kafka_bootstrap_servers,
            "SAKK_DATABASE_URL": s.ledger_url,
            "SAKK_TOPIC_PREFIX": s.topic_prefix,
            "SAKK_DATA_DIR": str(tmp_path),
            "SAKK_LOG_LEVEL": "WARNING",
            "SAKK_MAX_MESSAGE_BYTES": str(s.max_message_bytes),
            "USER": "ops-on-call",
            "COLUMNS": "200",  # rich tables unwrapped, so lines can be matched
            **extra_env,
        }
        runner = CliRunner()

        def run(*args: str) -> tuple[int, str]:
            result = runner.invoke(cli, list(args), env=env, catch_exceptions=False)
            return result.exit_code, result.output

        return run

    yield bind


def test_schema_not_approved_dead_letter_settles_once_its_schema_is_approved_and_redriven(
    flow_factory, database_url, tmp_path, quick_schema_lookups
):
    flow = flow_factory(database_url, consumers=STAGES)
    schema, writer = newer_writer(tmp_path)
    p = payment(AMINA, KARIM, 3_000)
    original = writer.encode("PaymentInitiated", {**p, "device_id": "android-7f3a"})
    flow.publish_encoded([original], key=KEY)  # before the operator approved its schema
    flow.wait_until(lambda: [d.kind for d in dead_letters(flow)] == ["schema_not_approved"])
    (dead,) = dead_letters(flow)
    approval = approve(flow.engine, json.dumps(schema), release_schemas(), "operator-1")
    assert approval.status is ApprovalStatus.APPROVED, approval.reason

    with Redriver(flow.settings, flow.engine, make_codec(flow.settings, flow.engine)) as redriver:
        first = redriver.redrive(dead.id, "alice", "PaymentInitiated v2 registered")
        flow.wait_until(lambda: state_of(flow, p) == "SETTLED")
        before = ledger_rows(flow)
        second = redriver.redrive(dead.id, "bob")

    assert first.sent and not second.sent
    assert ledger_rows(flow) == before
    c = counts(flow)
    assert (c.settled, c.dead_lettered, c.redriven) == (1, 0, 1)
    assert c.terminal + c.dead_lettered == 1  # the bank published one message
    redrive = first.redrive
    assert (redrive.payment_id, redrive.event_id) == (switch_id(p), switch_id(p, "event_id"))
    assert (redrive.body_source, redrive.target_topic) == ("original", dead.source_topic)
    # No second copy: a payment published after the second redrive comes right after the first.
    marker = payment(AMINA, KARIM, 1)
    flow.publish([marker])
    records = read_partition_until(flow, dead.source_partition, marker["event_id"])
    assert [r.value for r in records[:2]] == [original, original]
    assert len(records) == 3 and records[1].offset == redrive.published_offset
    headers = dict(records[1].headers)
    assert headers["sakk.signature"] == dict(records[0].headers)["sakk.signature"]  # the bank's
    assert headers["sakk.redrive.of"] == str(dead.id).encode()
    assert headers["sakk.redrive.by"] == b"alice"
    assert headers["sakk.source.offset"] == str(dead.source_offset).encode()
    with flow.engine.connect() as conn:
        trace = trace_payment(conn, Audience.operator(), switch_id(p), TOPOLOGY)
    assert [d["id"] for d in trace.dead_letters] == [dead.id]
    assert [(r["requested_by"], r["status"]) for r in trace.redrives] == [("alice", "PUBLISHED")]


def test_operator_redrives_a_mangled_payment_with_the_banks_corrected_body(
    flow_factory, database_url, tmp_path, sakk
):
    flow = flow_factory(database_url, consumers=STAGES)
    p = payment(AMINA, KARIM, 4_000)
    flow.publish_encoded([flow.codec.encode("PaymentInitiated", p)[:25]], key=KEY)
    flow.wait_until(lambda: len(dead_letters(flow)) == 1)
    run = sakk(flow)

    code, out = run("dlq", "list", "--kind", "undecodable", "--json")
    assert code == 0, out
    (listed,) = json.loads(out)
    assert (listed["consumer"], listed["redriven"]) == ("validator", False)
    dead_letter_id = str(listed["id"])
    code, out = run("dlq", "show", dead_letter_id)
    assert code == 0, out
    assert "does not decode" in out and "undecodable" in out
    assert "****0111" in out and AMINA[1] not in out  # the key is the payer's account

    fix = corrected_files(flow, tmp_path, p)
    args = (*fix, "--by", "alice", "--reason", "bank re-sent it whole")
    code, out = run("dlq", "redrive", dead_letter_id, *args)
    assert code == 0 and "redriven (corrected body)" in out, out
    flow.wait_until(lambda: state_of(flow, p) == "SETTLED")
    before = ledger_rows(flow)

    code, out = run("dlq", "redrive", dead_letter_id)
    assert code == 0 and "already redriven by alice" in out and "nothing sent" in out, out
    assert ledger_rows(flow) == before
    c = counts(flow)
    assert (c.settled, c.dead_lettered, c.redriven) == (1, 0, 1)

    code, out = run("dlq", "list", "--json")
    (listed,) = json.loads(out)
    assert listed["redriven"] and listed["redrive"]["requested_by"] == "alice"
    code, out = run("dlq", "show", dead_letter_id)
    assert "PUBLISHED by alice" in out and "bank re-sent it whole" in out, out
    code, out = run("trace", switch_id(p), "--format", "json")
    assert code == 0, out
    traced = json.loads(out)
    assert [d["id"] for d in traced["dead_letters"]] == [int(dead_letter_id)]
    (redrive,) = traced["redrives"]
    assert (redrive["requested_by"], redrive["status"]) == ("alice", "PUBLISHED")
    assert redrive["target_topic"] == flow.settings.topic("initiated")
    code, out = run("trace", switch_id(p))
    assert code == 0 and "Dead letters sent again" in out, out


def test_a_dead_letter_cut_to_fit_the_topic_is_refused_until_a_corrected_body_is_given(
    flow_factory, database_url, tmp_path, sakk
):
    flow = flow_factory(database_url, consumers=STAGES, max_message_bytes=MAX_MESSAGE_BYTES)
    p = payment(AMINA, KARIM, 4_500)
    padded = flow.codec.encode("PaymentInitiated", p) + b"\x00" * (100 * 1024)  # stray bytes
    flow.publish_encoded([padded], key=KEY)
    flow.wait_until(lambda: len(dead_letters(flow)) == 1)
    run = sakk(flow)
    (dead,) = dead_letters(flow)

    code, out = run("dlq", "redrive", str(dead.id))
    assert code == 1, out
    assert "cut to 65,536 bytes" in out and f"sakk dlq redrive {dead.id} --body FILE" in out
    code, out = run("dlq", "redrive", "--kind", "undecodable")
    assert code == 1 and "0 sent, 0 already sent, 1 refused" in out, out
    assert ledger_rows(flow)[2] == []  # nothing recorded, nothing sent
    code, out = run("dlq", "show", str(dead.id))
    assert "cut to fit the dead-letter topic" in out, out

    code, out = run("dlq", "redrive", str(dead.id), *corrected_files(flow, tmp_path, p))
    assert code == 0 and "redriven (corrected body)" in out, out
    flow.wait_until(lambda: state_of(flow, p) == "SETTLED")
    assert ledger_rows(flow)[2][0].requested_by == "ops-on-call"  # $USER
    c = counts(flow)
    assert c.terminal + c.dead_lettered == 1
