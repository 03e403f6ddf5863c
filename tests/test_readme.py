"""The README's quickstart is a promise: its commands exist and the demo does what it says."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
DEMO_TIMEOUT_S = 300


def quickstart_commands() -> list[str]:
    section = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "the Quickstart section has no ```sh block"
    return [line.split("#", 1)[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_quickstart_is_exactly_make_demo_and_make_test():
    assert quickstart_commands() == ["make demo", "make test"]


@pytest.mark.parametrize("target", ["demo", "test"])
def test_quickstart_targets_exist_in_the_makefile(target):
    dry_run = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True)
    assert dry_run.returncode == 0, dry_run.stderr


@pytest.mark.integration
@pytest.mark.slow
def test_make_demo_publishes_settles_and_checks_the_ledger(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAKK_")}
    env["SAKK_DATA_DIR"] = str(tmp_path)
    run = subprocess.run(
        ["make", "demo", "PAYMENTS=400"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_S,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "Payments by channel" in run.stdout
    published = re.search(
        r"OK published (\d+) = settled \d+ \+ rejected \d+ \+ failed \d+ \+ dead-lettered \d+",
        run.stdout,
    )
    assert "OK ledger balances" in run.stdout
    assert "OK lifecycle as the traffic expected" in run.stdout
    assert "OK net positions sum to zero" in run.stdout
    assert re.search(r"OK window \S+ closed, instructed \(pacs.009\), confirmed", run.stdout)
    held = re.search(
        r"OK bank 007 held to its liquidity: withdrew [\d,.]+, then (\d+) settled and 2 refused "
        r"AM04 before its deposit of 1,000,000.00, 2 settled after",
        " ".join(run.stdout.split()),
    )
    assert held and int(held[1]) >= 2, "two of its payments fit before its deposit, or more"
    # The demo's own payments for bank 007 are published too: those that fit, 2 refused,
    # the same 2 again after the deposit.
    assert published and int(published[1]) == 400 + int(held[1]) + 4
    assert "OK no bank's position and holds beyond its net debit cap or its liquidity" in (
        " ".join(run.stdout.split())
    )
    for table in ("Card holds by channel", "Money back by channel", "Interbank net positions",
                  "Liquidity before the window settled"):  # fmt: skip
        assert table in run.stdout
    signed = re.search(r"OK signed (\d+), refused for security (\d+)", run.stdout)
    assert signed and int(signed[1]) > 0, "every payment is signed, forgeries refused"
    for channel in ("WEB", "MOBILE", "ATM", "POS", "BRANCH", "EGOV"):
        assert f"│ {channel}" in run.stdout
