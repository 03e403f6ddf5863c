"""Switch-governed schemas through the embedded broker, on SQLite and PostgreSQL.

Bank A (007) has its own key and the produce rights a bank has; bank B (011) sends a
genuine payment. Whatever A does with schemas, B's payment settles as B sent it, and
``in = out + rejected + dead-lettered`` holds. The attacks are those of issue 18.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from click.testing import CliRunner
from sqlalchemy import insert, inspect, select, text
from sqlalchemy.exc import DBAPIError

import sakk.cli.db  # noqa: F401  (registers the command)
import sakk.cli.schemas  # noqa: F401
from engine.config import PROJECT_ROOT
from engine.kafka.client import Outgoing, create_topics
from engine.ledger.checks import flow_counts
from engine.ledger.database import alembic_config, make_engine, upgrade
from engine.ledger.exceptions import ReleaseSchemaConflictError
from engine.ledger.models import ApprovedSchema, DeadLetter, Payment, table_of
from engine.ledger.schemas import ApprovalStatus, LedgerApprovedSchemas, approve
from engine.serialization import (
    HEADER_BYTES,
    MARKER,
    AvroCodec,
    SchemaRegistry,
    read_release_schemas,
    schema_fingerprint,
    schema_identity,
    schema_text,
)
from sakk.app import TOPOLOGY, make_codec
from sakk.cli import cli
from tests.factories import AMINA, KARIM, payment, switch_id
from tests.integration.test_flow import balance
from tests.schema_attacks import (
    forged_swapped_initiated,
    micros_initiated,
    optional_field,
    recursive_initiated,
    release_initiated,
    swapped_accounts,
    with_fields,
    zigzag,
)

pytestmark = pytest.mark.integration

BEFORE_APPROVED_SCHEMAS = "0009"  # the revision before this table's migration
SETTLE_WITHIN_S = 30.0  # B's payment behind A's messages: seconds, not a stop
FLOOD = 2_000  # attack 5: messages with a random fingerprint each
TAGS = with_fields(
    release_initiated(), optional_field("tags", {"type": "array", "items": "string"})
)
NULLS = with_fields(
    release_initiated(), optional_field("nulls", {"type": "array", "items": "null"})
)
B1 = KARIM  # bank B's payer
B2 = AMINA  # its payee, at bank A


def release() -> dict[str, dict[str, Any]]:
    return {k: json.loads(v) for k, v in read_release_schemas(PROJECT_ROOT / "schemas").items()}


def dead_letters(flow) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    with flow.engine.connect() as conn:
        rows = conn.execute(select(DeadLetter.kind, DeadLetter.reason).order_by(DeadLetter.id))
        return [(kind, reason) for kind, reason in rows]


def settled_as_sent(flow, record: dict[str, Any]) -> bool:  # type: ignore[no-untyped-def]
    with flow.engine.connect() as conn:
        row = conn.execute(
            select(Payment.state, Payment.payer_account, Payment.payee_account,
                   Payment.occurred_at).where(Payment.payment_id == switch_id(record))
        ).one_or_none()  # fmt: skip
    if row is None or row.state != "SETTLED":
        return False
    assert (row.payer_account, row.payee_account) == (record["payer_account"],
                                                       record["payee_account"])  # fmt: skip
    assert row.occurred_at.replace(tzinfo=None) == record["occurred_at"].replace(tzinfo=None)
    return True


def assert_counts_add_up(flow, sent: int) -> None:  # type: ignore[no-untyped-def]
    with flow.engine.connect() as conn:
        c = flow_counts(conn, TOPOLOGY.entry.name)
    assert c.terminal + c.dead_lettered == sent, c


def a_message(flow, value: bytes, key: bytes = B1[1].encode()) -> Outgoing:  # type: ignore[no-untyped-def]
    """A's message, signed with A's own key, on the partition of B's payer (A chose it)."""
    return flow.signed_message(key, value, "007")


def under(schema: dict[str, Any], body: bytes) -> bytes:
    return MARKER + schema_fingerprint(schema) + body


def release_body(flow, record: dict[str, Any]) -> bytes:  # type: ignore[no-untyped-def]
    return flow.codec.encode("PaymentInitiated", record)[HEADER_BYTES:]


def test_a_forged_collision_is_refused_at_approval_and_b_settles_as_sent(
    flow_factory, database_url
):
    """Attack 1: accounts swapped under B's fingerprint (a CRC-64 collision)."""
    flow = flow_factory(database_url)
    forged = forged_swapped_initiated()
    refused = approve(flow.engine, json.dumps(forged), release(), "tricked-operator")
    assert refused.status is ApprovalStatus.REFUSED
    assert "collides with an approved schema" in refused.reason
    # A writes the forged schema wherever it still can: the old store topic, and its own
    # payment under the swapped layout's own (unapproved) fingerprint.
    store = flow.settings.topic_prefix + "._schemas"
    create_topics(flow.settings, [store])
    mine = payment(AMINA, KARIM, 100)
    flow.send([
        Outgoing(store, schema_fingerprint(forged), schema_text(forged).encode()),
        a_message(flow, under(swapped_accounts(release_initiated()), release_body(flow, mine))),
    ])  # fmt: skip
    genuine = payment(B1, B2, 5_000)
    before = balance(flow, B1), balance(flow, B2)
    flow.publish([genuine])
    flow.wait_until(lambda: settled_as_sent(flow, genuine), SETTLE_WITHIN_S)
    flow.wait_until(lambda: len(dead_letters(flow)) == 1)
    assert [k for k, _ in dead_letters(flow)] == ["schema_not_approved"]
    assert balance(flow, B1) < before[0] and balance(flow, B2) == before[1] + 5_000
    assert_counts_add_up(flow, 2)


def test_a_logical_type_twin_is_refused_and_b_settles_with_its_own_time(flow_factory, database_url):
    """Attack 2: ``occurred_at`` as timestamp-micros, the same fingerprint with no crypto."""
    flow = flow_factory(database_url)
    twin = micros_initiated()
    assert schema_fingerprint(twin) == schema_fingerprint(release_initiated())
    assert schema_identity(twin) != schema_identity(release_initiated())
    refused = approve(flow.engine, json.dumps(twin), release(), "tricked-operator")
    assert refused.status is ApprovalStatus.REFUSED and "collides" in refused.reason
    genuine = payment(B1, B2, 1_000)
    flow.publish([genuine])
    flow.wait_until(lambda: settled_as_sent(flow, genuine), SETTLE_WITHIN_S)
    assert dead_letters(flow) == []
    assert_counts_add_up(flow, 1)


def test_a_huge_block_count_is_dead_lettered_and_b_behind_it_settles_within_seconds(
    flow_factory, database_url
):
    """Attack 3: ``array<null>`` is refused; under an approved array, 2^62 items in 188 bytes."""
    flow = flow_factory(database_url)
    nulls = approve(flow.engine, json.dumps(NULLS), release(), "operator-1")
    assert nulls.status is ApprovalStatus.REFUSED and "zero bytes" in nulls.reason
    tags = approve(flow.engine, json.dumps(TAGS), release(), "operator-1")
    assert tags.status is ApprovalStatus.APPROVED, tags.reason
    body = release_body(flow, payment(AMINA, KARIM, 100))
    flow.send([
        a_message(flow, under(NULLS, body + zigzag(1) + zigzag(2**62) + zigzag(0))),
        a_message(flow, under(TAGS, body + zigzag(1) + zigzag(2**62) + zigzag(0))),
    ])  # fmt: skip
    genuine = payment(B1, B2, 2_000)  # same key: the same partition, right behind
    started = time.monotonic()
    flow.publish([genuine])
    flow.wait_until(lambda: settled_as_sent(flow, genuine), SETTLE_WITHIN_S)
    assert time.monotonic() - started < SETTLE_WITHIN_S
    flow.wait_until(lambda: len(dead_letters(flow)) == 2)
    kinds = dict(dead_letters(flow))
    assert set(kinds) == {"schema_not_approved", "undecodable"}
    assert "out of bounds" in kinds["undecodable"]
    assert_counts_add_up(flow, 3)


def test_a_recursive_schema_is_refused_and_its_messages_dead_lettered(flow_factory, database_url):
    """Attack 4: a record whose field is ``["null", itself]``, nested 300,000 levels deep."""
    flow = flow_factory(database_url)
    nest = recursive_initiated()
    refused = approve(flow.engine, json.dumps(nest), release(), "operator-1")
    assert refused.status is ApprovalStatus.REFUSED and "recursive type" in refused.reason
    deep = release_body(flow, payment(AMINA, KARIM, 100)) + b"\x02" * 300_000 + b"\x00"
    flow.send([a_message(flow, under(nest, deep))])
    genuine = payment(B1, B2, 3_000)
    flow.publish([genuine])
    flow.wait_until(lambda: settled_as_sent(flow, genuine), SETTLE_WITHIN_S)
    flow.wait_until(lambda: len(dead_letters(flow)) == 1)
    assert [k for k, _ in dead_letters(flow)] == ["schema_not_approved"]
    assert_counts_add_up(flow, 2)


class CountingApprovals(LedgerApprovedSchemas):
    """The ledger's approved set, counting the "newest approval?" queries of every codec."""

    newest_queries = 0
    loads = 0

    def newest_id(self) -> int:
        CountingApprovals.newest_queries += 1
        return super().newest_id()

    def since(self, after_id: int) -> list[Any]:
        CountingApprovals.loads += 1
        return super().since(after_id)


def test_a_flood_of_unknown_fingerprints_costs_no_store_read_per_message(
    flow_factory, database_url, monkeypatch
):
    """Attack 5: 2,000 messages with a random fingerprint each, then B's payment."""
    monkeypatch.setattr("sakk.app.LedgerApprovedSchemas", CountingApprovals)
    CountingApprovals.newest_queries = CountingApprovals.loads = 0
    flow = flow_factory(database_url, consumers=("validator", "settlement"))
    loads_at_start = CountingApprovals.loads
    body = release_body(flow, payment(AMINA, KARIM, 100))
    started = time.monotonic()
    flow.send([a_message(flow, MARKER + os.urandom(8) + body) for _ in range(FLOOD)])
    genuine = payment(B1, B2, 4_000)
    flow.publish([genuine])
    flow.wait_until(lambda: settled_as_sent(flow, genuine), 120)
    elapsed = time.monotonic() - started
    with flow.engine.connect() as conn:
        assert flow_counts(conn, TOPOLOGY.entry.name).dead_lettered == FLOOD
    # At most one query per interval per codec: never one per message.
    assert CountingApprovals.newest_queries <= 2 * (elapsed / 5.0 + 1), (
        CountingApprovals.newest_queries, elapsed)  # fmt: skip
    assert CountingApprovals.loads == loads_at_start  # nothing new approved: nothing reloaded
    assert_counts_add_up(flow, FLOOD + 1)


# --- the approved set in the ledger ----------------------------------------------------------


def test_release_schemas_are_approved_once_and_a_process_refuses_to_start_beside_another(
    database_url, tmp_path: Path
):
    upgrade(database_url)
    engine = make_engine(database_url)
    settings_like = _settings(database_url, tmp_path)
    try:
        make_codec(settings_like, engine)
        make_codec(settings_like, engine)  # idempotent
        with engine.connect() as conn:
            rows = conn.execute(select(ApprovedSchema.event_type, ApprovedSchema.origin)).all()
        assert sorted(rows) == sorted((name, "release") for name in release())
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text("UPDATE approved_schemas SET schema_text = 'x'"))
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text("DELETE FROM approved_schemas"))
    finally:
        engine.dispose()


def test_a_ledger_holding_another_schema_under_a_release_fingerprint_stops_the_start(
    database_url, tmp_path: Path
):
    upgrade(database_url)
    engine = make_engine(database_url)
    twin = micros_initiated()
    row = {"fingerprint": schema_fingerprint(twin), "identity": schema_identity(twin),
           "event_type": "PaymentInitiated", "schema_text": schema_text(twin),
           "origin": "operator", "approved_by": "someone", "approved_at": _now()}  # fmt: skip
    try:
        with engine.begin() as conn:
            conn.execute(insert(table_of(ApprovedSchema)), [row])
        with pytest.raises(ReleaseSchemaConflictError, match="PaymentInitiated: fingerprint"):
            make_codec(_settings(database_url, tmp_path), engine)
    finally:
        engine.dispose()


def test_a_row_that_does_not_hash_to_its_identity_is_never_used(database_url, tmp_path: Path):
    upgrade(database_url)
    engine = make_engine(database_url)
    v2 = with_fields(release_initiated(), optional_field("device_id", "string"))
    lie = {"fingerprint": schema_fingerprint(v2), "identity": schema_identity(v2),
           "event_type": "PaymentInitiated", "schema_text": schema_text(swapped_accounts(v2)),
           "origin": "operator", "approved_by": "someone", "approved_at": _now()}  # fmt: skip
    try:
        with engine.begin() as conn:
            conn.execute(insert(table_of(ApprovedSchema)), [lie])
        codec = make_codec(_settings(database_url, tmp_path), engine)
        assert codec.registry.writer_for(schema_fingerprint(v2)) is None
        writer = AvroCodec(SchemaRegistry({"PaymentInitiated": v2}))
        data = writer.encode("PaymentInitiated", {**payment(), "device_id": "x"})
        with pytest.raises(Exception, match="not an approved schema"):
            codec.decode(data)
    finally:
        engine.dispose()


def test_sakk_schemas_approve_and_list(database_url, tmp_path: Path):
    env = {"SAKK_DATABASE_URL": database_url, "SAKK_DATA_DIR": str(tmp_path)}
    runner = CliRunner()
    assert runner.invoke(cli, ["db", "upgrade"], env=env).exit_code == 0
    v2 = tmp_path / "v2.avsc"
    v2.write_text(
        json.dumps(with_fields(release_initiated(), optional_field("device_id", "string")))
    )
    nest = tmp_path / "nest.avsc"
    nest.write_text(json.dumps(recursive_initiated()))

    first = runner.invoke(cli, ["schemas", "approve", str(v2), "--by", "alice"], env=env)
    again = runner.invoke(cli, ["schemas", "approve", str(v2), "--by", "bob"], env=env)
    refused = runner.invoke(cli, ["schemas", "approve", str(nest), "--by", "alice"], env=env)
    listed = runner.invoke(cli, ["schemas", "list", "--format", "json"], env=env)

    assert first.exit_code == 0 and first.output.startswith("approved: PaymentInitiated")
    assert again.exit_code == 0 and "already approved" in again.output
    assert refused.exit_code == 1 and "recursive type" in refused.output
    rows = json.loads(listed.output)
    assert len(rows) == len(release()) + 1
    assert (rows[-1]["origin"], rows[-1]["approved_by"]) == ("operator", "alice")


def test_the_migration_goes_down_and_up_again(database_url):
    upgrade(database_url)
    engine = make_engine(database_url)
    try:
        assert "approved_schemas" in inspect(engine).get_table_names()
        command.downgrade(alembic_config(database_url), BEFORE_APPROVED_SCHEMAS)
        assert "approved_schemas" not in inspect(engine).get_table_names()
        upgrade(database_url)
        with engine.connect() as conn:
            assert conn.execute(select(ApprovedSchema.id)).all() == []
    finally:
        engine.dispose()


def _settings(database_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    from engine.config import load_settings

    return load_settings(environ={}, database_url=database_url, data_dir=tmp_path)


def _now():  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    return datetime.now(UTC)
