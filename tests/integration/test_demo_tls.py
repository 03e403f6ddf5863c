"""``sakk demo --tls``: the whole demo over mutual TLS through a terminator it starts itself."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import sakk.cli.demo  # noqa: F401 - registers `sakk demo`
from engine.kafka.terminator import stunnel_missing
from sakk.cli import cli

ROOT = Path(__file__).resolve().parents[2]
DEMO_TIMEOUT_S = 300
PAYMENTS = 200


def demo_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAKK_")}
    env["SAKK_DATA_DIR"] = str(data_dir)
    return env


@pytest.mark.integration
@pytest.mark.slow
def test_demo_over_tls_settles_and_every_process_connects_with_its_certificate(
    tmp_path: Path,
) -> None:
    reason = stunnel_missing()
    if reason:
        pytest.skip(f"sakk demo --tls needs a TLS terminator: {reason}")
    run = subprocess.run(
        [sys.executable, "-m", "sakk", "demo", "--tls", "--payments", str(PAYMENTS)],
        cwd=ROOT,
        env=demo_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_S,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "mutual TLS: stunnel on 127.0.0.1:" in run.stdout
    port = re.search(r"stunnel on 127\.0\.0\.1:(\d+)", run.stdout)
    assert port and f"broker 127.0.0.1:{port.group(1)}," in run.stdout, "not through stunnel"
    published = re.search(r"OK published (\d+) = settled \d+", run.stdout)
    # and the few the demo sends for the bank it holds to its liquidity
    assert published and int(published[1]) > PAYMENTS
    assert "OK ledger balances" in run.stdout
    log = (tmp_path / "demo" / "tls" / "stunnel" / "stunnel.log").read_text()
    # The demo itself, the simulator and each consumer process connected through TLS.
    assert log.count("Certificate accepted at depth=0: CN=sakk") >= 4
    assert "peer did not return a certificate" not in log


def test_demo_tls_refuses_a_broker_of_your_own(tmp_path: Path) -> None:
    env = {**demo_env(tmp_path), "SAKK_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    result = CliRunner().invoke(cli, ["demo", "--tls", "--payments", "1"], env=env)
    assert result.exit_code == 2, result.output
    assert "--tls runs the embedded broker behind a TLS terminator" in result.output
