"""``sakk keys generate|list|revoke`` on a SQLite ledger holding the test reference data."""

from __future__ import annotations

import base64
import json
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives import serialization

import sakk.cli.keys  # noqa: F401  (registers the command)
from engine.ledger.database import make_engine, upgrade
from engine.ledger.keys import list_keys, parse_key_entry
from engine.ledger.reference import load_reference_data, read_file
from engine.trust.keys import KeyPair, encode_public
from sakk.cli import cli
from tests.factories import REFERENCE_FILE, SIGNERS

KEY_007 = SIGNERS.get("007").key_id  # the reference fixture's key of bank 007
PUBLIC_007 = encode_public(SIGNERS.get("007").key.public)


@pytest.fixture
def ledger_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    upgrade(url)
    engine = make_engine(url)
    load_reference_data(engine, read_file(REFERENCE_FILE))
    engine.dispose()
    return url


def sakk(ledger_url: str, *args: str) -> Result:
    env = {"SAKK_DATABASE_URL": ledger_url, "SAKK_LOG_LEVEL": "WARNING"}
    return CliRunner().invoke(cli, ["keys", *args], env=env, catch_exceptions=False)


def generated(out: Path) -> tuple[Path, Path]:
    (private,) = out.glob("*.key")
    (public,) = out.glob("*.json")
    return private, public


# --- generate ---------------------------------------------------------------------------


def test_generate_writes_an_owner_only_private_key_and_prints_only_the_public_entry(
    ledger_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "keys"
    result = sakk(ledger_url, "generate", "007", "--out", str(out))

    assert result.exit_code == 0, result.output
    private_path, public_path = generated(out)
    assert stat.S_IMODE(private_path.stat().st_mode) == 0o600
    pair = KeyPair.read(private_path)
    entry = json.loads(result.stdout)
    assert entry == json.loads(public_path.read_text())
    assert entry["key_id"] == pair.key_id and entry["public_key"] == encode_public(pair.public)
    assert private_path.name == f"007-{pair.key_id}.key"
    parse_key_entry("007", entry, "generated")  # pastes under the bank's "keys" as it is
    raw_private = pair.private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    for secret in (private_path.read_text(), base64.b64encode(raw_private).decode(), "PRIVATE"):
        assert secret not in result.output
    assert str(private_path) in result.stderr  # where it went is said, on stderr


def test_generate_takes_a_validity_window(ledger_url: str, tmp_path: Path) -> None:
    result = sakk(
        ledger_url, "generate", "011", "--out", str(tmp_path),
        "--valid-from", "2027-01-01T00:00:00Z", "--valid-until", "2028-01-01T00:00:00+01:00",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    entry = json.loads(result.stdout)
    assert entry["valid_from"] == "2027-01-01T00:00:00Z"
    assert entry["valid_until"] == "2027-12-31T23:00:00Z"


@pytest.mark.parametrize(
    "args",
    [
        ["--valid-from", "2027-01-01T00:00:00Z", "--valid-until", "2026-01-01T00:00:00Z"],
        ["--valid-from", "2027-01-01T00:00:00"],  # no offset: ambiguous
    ],
)
def test_generate_refuses_a_bad_window_and_writes_nothing(
    ledger_url: str, tmp_path: Path, args: list[str]
) -> None:
    result = sakk(ledger_url, "generate", "007", "--out", str(tmp_path / "k"), *args)
    assert result.exit_code == 2
    assert not (tmp_path / "k").exists()


def test_generate_refuses_a_bank_code_that_is_no_token(ledger_url: str, tmp_path: Path) -> None:
    result = sakk(ledger_url, "generate", "00 7", "--out", str(tmp_path / "k"))
    assert result.exit_code == 2 and "bank code" in result.output
    assert not (tmp_path / "k").exists()


def test_generate_register_puts_the_public_key_in_the_ledger(
    ledger_url: str, tmp_path: Path
) -> None:
    result = sakk(ledger_url, "generate", "310", "--out", str(tmp_path), "--register")
    assert result.exit_code == 0, result.output
    key_id = json.loads(result.stdout)["key_id"]
    with make_engine(ledger_url).connect() as conn:
        keys = {k.key_id: k for k in list_keys(conn, "310")}
    assert set(keys) == {SIGNERS.get("310").key_id, key_id}
    assert keys[key_id].public_key == json.loads(result.stdout)["public_key"]


def test_generate_register_refuses_a_bank_the_ledger_does_not_know(
    ledger_url: str, tmp_path: Path
) -> None:
    result = sakk(ledger_url, "generate", "999", "--out", str(tmp_path / "k"), "--register")
    assert result.exit_code == 1 and "bank 999 is not in the ledger" in result.output
    assert not (tmp_path / "k").exists()


# --- list -------------------------------------------------------------------------------


def test_list_shows_every_key_with_its_window_and_whether_it_is_valid_now(
    ledger_url: str,
) -> None:
    result = sakk(ledger_url, "list")
    assert result.exit_code == 0, result.output
    header, *lines = result.stdout.splitlines()
    assert header.split()[:3] == ["key", "id", "bank"] and "valid now" in header
    assert len(lines) == 3
    assert any(KEY_007 in line and " 007 " in line and line.endswith("yes") for line in lines)


def test_list_as_json_filters_by_bank(ledger_url: str) -> None:
    result = sakk(ledger_url, "list", "--bank", "007", "--format", "json")
    assert result.exit_code == 0, result.output
    (key,) = json.loads(result.stdout)
    assert key == {
        "key_id": KEY_007, "bank": "007", "public_key": PUBLIC_007,
        "valid_from": "2020-01-01T00:00:00Z", "valid_until": None, "revoked_at": None,
        "valid_now": True, "refusal": None,
    }  # fmt: skip


# --- revoke -----------------------------------------------------------------------------


def test_revoke_at_a_time_makes_the_key_invalid_from_then(ledger_url: str) -> None:
    result = sakk(ledger_url, "revoke", "007", KEY_007, "--at", "2025-06-01T12:00:00Z")
    assert result.exit_code == 0, result.output
    assert "revoked from 2025-06-01T12:00:00Z" in result.output
    (key,) = json.loads(sakk(ledger_url, "list", "--bank", "007", "--format", "json").stdout)
    assert key["revoked_at"] == "2025-06-01T12:00:00Z"
    assert (key["valid_now"], key["refusal"]) == (False, "key_revoked")


def test_revoke_defaults_to_now(ledger_url: str) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    assert sakk(ledger_url, "revoke", "011", SIGNERS.get("011").key_id).exit_code == 0
    with make_engine(ledger_url).connect() as conn:
        (key,) = list_keys(conn, "011")
    assert key.revoked_at is not None and before <= key.revoked_at <= datetime.now(UTC)


def test_a_later_revocation_keeps_the_earlier_one_in_force_and_says_so(ledger_url: str) -> None:
    sakk(ledger_url, "revoke", "007", KEY_007, "--at", "2025-06-01T12:00:00Z")
    result = sakk(ledger_url, "revoke", "007", KEY_007, "--at", "2026-01-01T00:00:00Z")
    assert result.exit_code == 0, result.output
    assert "already revoked from 2025-06-01T12:00:00Z" in result.output
    assert "kept" in result.output
    (key,) = json.loads(sakk(ledger_url, "list", "--bank", "007", "--format", "json").stdout)
    assert key["revoked_at"] == "2025-06-01T12:00:00Z"


def test_an_earlier_revocation_moves_it_earlier(ledger_url: str) -> None:
    sakk(ledger_url, "revoke", "007", KEY_007, "--at", "2026-01-01T00:00:00Z")
    result = sakk(ledger_url, "revoke", "007", KEY_007, "--at", "2025-06-01T12:00:00Z")
    assert "revoked from 2025-06-01T12:00:00Z" in result.output


def test_revoking_an_unknown_key_fails_naming_it(ledger_url: str) -> None:
    result = sakk(ledger_url, "revoke", "007", "0123456789abcdef")
    assert result.exit_code == 1
    assert "bank 007 has no key 0123456789abcdef" in result.output
