"""``sakk iso import`` as a bank runs it: its key, the broker, the switch's directory file.

No ledger: the bank's tool never reaches the switch's database, creates none, and says
clearly (exit 2) when the directory file is missing or not one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from engine.ledger.models import Payment
from engine.trust.keys import KeyPair
from sakk.cli import cli
from tests.conftest import Flow
from tests.factories import AMINA, KARIM
from tests.fixtures.iso.messages import Tx, pacs008

pytestmark = pytest.mark.integration

USAGE = 2  # click's exit code for a usage error


def _load_commands() -> None:
    import importlib
    import pkgutil

    import sakk.cli as package

    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"sakk.cli.{module.name}")


def test_a_bank_imports_with_its_key_the_broker_and_the_directory_file_only(
    flow_factory: Callable[..., Flow], database_url: str, tmp_path: Path
) -> None:
    _load_commands()
    flow = flow_factory(database_url)
    runner = CliRunner()
    switch_env = {"SAKK_DATABASE_URL": flow.settings.ledger_url, "SAKK_DATA_DIR": str(tmp_path)}
    directory = tmp_path / "directory.json"
    exported = runner.invoke(cli, ["directory", "export", str(directory)], env=switch_env)
    assert exported.exit_code == 0, exported.output
    assert {"code": "007", "bic": "BCMAMAMC"} in json.loads(directory.read_text())["banks"]

    bank_dir = tmp_path / "bank"  # the bank's machine: nothing of the switch's there
    bank_dir.mkdir()
    pair = KeyPair.from_seed(b"sakk-simulated/tests/007")  # SIGNERS' key of 007
    key_file = bank_dir / f"007-{pair.key_id}.key"  # as sakk keys generate names it
    pair.write(key_file)
    message = bank_dir / "pacs008.xml"
    message.write_bytes(pacs008([Tx("CLI-IMPORT-1", AMINA, KARIM, "12.50")], msg_id="CLI-1"))
    bank_env = {
        "SAKK_KAFKA_BOOTSTRAP_SERVERS": flow.settings.kafka_bootstrap_servers,
        "SAKK_TOPIC_PREFIX": flow.settings.topic_prefix,
        "SAKK_DATA_DIR": str(bank_dir),
        "SAKK_DATABASE_URL": "",
        "SAKK_SIGNING_KEY_FILE": str(key_file),
        "SAKK_LOG_LEVEL": "WARNING",
    }

    missing = runner.invoke(cli, ["iso", "import", str(message)], env=bank_env)
    assert missing.exit_code == USAGE
    assert "no bank directory" in missing.output and "sakk directory export" in missing.output
    not_one = bank_dir / "not-a-directory.json"
    not_one.write_text('{"banks": []}')
    wrong = runner.invoke(
        cli, ["iso", "import", str(message), "--directory", str(not_one)], env=bank_env
    )
    assert wrong.exit_code == USAGE and "not a sakk.bank-directory/1 file" in wrong.output
    absent = runner.invoke(
        cli, ["iso", "import", str(message), "--directory", str(bank_dir / "nope.json")],
        env=bank_env,
    )  # fmt: skip
    assert absent.exit_code == USAGE and "nope.json" in absent.output

    imported = runner.invoke(
        cli, ["iso", "import", str(message), "--directory", str(directory)], env=bank_env
    )
    assert imported.exit_code == 0, imported.output
    assert "1 published, 0 refused" in imported.output
    assert sorted(p.name for p in bank_dir.iterdir()) == [
        key_file.name, "not-a-directory.json", "pacs008.xml",
    ]  # no ledger file, no broker state  # fmt: skip

    def settled() -> bool:
        with flow.engine.connect() as conn:
            rows = conn.execute(
                select(Payment.state).where(Payment.bank_reference == "CLI-IMPORT-1")
            )
            return [r.state for r in rows] == ["SETTLED"]

    flow.wait_until(settled)
