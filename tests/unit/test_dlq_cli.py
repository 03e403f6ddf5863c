"""``sakk dlq`` without a broker: arguments checked first, listings and masking from the ledger."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

import sakk.cli.dlq  # noqa: F401  (registers the command group on ``cli``)
from consumers.validator import Validator
from engine.config import load_settings
from engine.ledger.database import make_engine, upgrade
from engine.ledger.reference import load_reference_data, read_file
from engine.pipeline.messages import RawMessage
from engine.pipeline.processor import BatchProcessor
from sakk.app import make_codec
from sakk.cli import cli
from tests.factories import AMINA, KARIM, REFERENCE_FILE, payment, signed


@pytest.fixture
def run(tmp_path: Path):  # type: ignore[no-untyped-def]
    """``sakk`` on a ledger under ``tmp_path`` holding one dead letter, keyed by Amina's account."""
    settings = load_settings(environ={}, data_dir=tmp_path, notify_log_path=tmp_path / "n.jsonl")
    upgrade(settings.ledger_url)
    engine = make_engine(settings.ledger_url)
    load_reference_data(engine, read_file(REFERENCE_FILE))
    codec = make_codec(settings)
    processor = BatchProcessor(Validator(settings), engine, codec, settings)
    topic, key = settings.topic("initiated"), AMINA[1].encode()
    value = codec.encode("PaymentInitiated", payment(AMINA, KARIM))[:30]
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    processor.process([RawMessage(topic, 0, 7, key, value, now_ms, signed(topic, key, value))])
    engine.dispose()
    env = {"SAKK_DATA_DIR": str(tmp_path), "SAKK_LOG_LEVEL": "WARNING", "COLUMNS": "200"}

    def invoke(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(cli, ["dlq", *args], env=env, catch_exceptions=False)
        return result.exit_code, result.output

    return invoke


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        ((), "give a dead letter ID or --kind KIND"),
        (("1", "--kind", "undecodable"), "give a dead letter ID or --kind KIND"),
        (("--kind", "undecodable", "--body", __file__), "--body corrects one dead letter"),
        (("1", "--signature", __file__), "--signature goes with --body"),
        (("1",), "set SAKK_KAFKA_BOOTSTRAP_SERVERS"),
        (("--kind", "poison"), "send it anyway with --force"),
        (("--kind", "corrupt_batch"), "send it anyway with --force"),
        (("--kind", "poison", "--force"), "set SAKK_KAFKA_BOOTSTRAP_SERVERS"),
    ],
)
def test_redrive_arguments_are_refused_before_anything_is_read(run, args, problem) -> None:
    code, out = run("redrive", *args)
    assert code == 2 and problem in out, out


def test_list_shows_the_dead_letter_with_its_source_and_no_redrive(run) -> None:
    code, out = run("list", "--json")
    assert code == 0, out
    (listed,) = json.loads(out)
    assert (listed["kind"], listed["source_offset"], listed["redriven"]) == (
        "undecodable",
        7,
        False,
    )
    code, out = run("list", "--kind", "unknown_schema")
    assert code == 0 and "no dead letters match" in out
    code, out = run("list", "--since", "tomorrow")
    assert code == 2 and "not an ISO 8601 date or time" in out


def test_show_masks_the_payers_account_and_says_the_body_does_not_decode(run) -> None:
    code, out = run("show", "1")
    assert code == 0, out
    assert "****0111" in out and AMINA[1] not in out
    assert "does not decode" in out and "schemas: release and approved" in out
    code, out = run("show", "2")
    assert code == 1 and "no dead letter 2 in the ledger" in out
