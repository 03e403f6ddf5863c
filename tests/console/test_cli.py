"""``sakk users`` and ``sakk console --openapi`` from the command line."""

from __future__ import annotations

import json

from click.testing import CliRunner
from fastapi.testclient import TestClient

import sakk.cli.console  # noqa: F401  (each module registers its command on ``cli``)
import sakk.cli.users  # noqa: F401
from sakk.cli import cli
from sakk.console.app import create_app
from sakk.console.config import ConsoleConfig

PASSWORD = "a passphrase long enough"


def test_the_first_operator_is_added_with_a_password_from_stdin_then_signs_in(sqlite_url):
    runner = CliRunner()
    added = runner.invoke(
        cli, ["users", "add", "alice", "--role", "operator", "--database-url", sqlite_url,
              "--by", "root"], input=PASSWORD + "\n",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    assert PASSWORD not in added.output
    short = runner.invoke(
        cli, ["users", "add", "bob", "--role", "auditor", "--database-url", sqlite_url,
              "--by", "root"], input="short\n",
    )  # fmt: skip
    assert short.exit_code != 0 and "12 to" in short.output
    no_bank = runner.invoke(
        cli, ["users", "add", "carol", "--role", "bank", "--database-url", sqlite_url,
              "--by", "root"], input=PASSWORD + "\n",
    )  # fmt: skip
    assert no_bank.exit_code != 0 and "exactly one bank" in no_bank.output
    token = runner.invoke(
        cli, ["users", "token", "alice", "--label", "ci", "--database-url", sqlite_url,
              "--by", "root"],
    )  # fmt: skip
    assert token.exit_code == 0 and token.output.startswith("sakk_")
    listed = runner.invoke(cli, ["users", "list", "--database-url", sqlite_url])
    assert listed.output.split() == ["alice", "operator", "-"]
    client = TestClient(create_app(ConsoleConfig(sqlite_url, secure_cookies=False)))
    signed = client.post("/api/v1/session", json={"name": "alice", "password": PASSWORD})
    assert signed.status_code == 200 and signed.json()["role"] == "operator"
    headers = {"Authorization": f"Bearer {token.output.strip()}"}
    assert TestClient(client.app).get("/api/v1/session", headers=headers).status_code == 200


def test_the_openapi_document_is_printed_without_a_ledger(tmp_path):
    printed = CliRunner().invoke(
        cli, ["console", "--openapi", "--database-url", f"sqlite:///{tmp_path / 'none.db'}"]
    )
    assert printed.exit_code == 0, printed.output
    assert json.loads(printed.output)["info"]["title"] == "Sakk console API"
    assert not (tmp_path / "none.db").exists()
