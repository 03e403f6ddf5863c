"""No holder name and no full account number reaches a log line, even at DEBUG.

The demo runs as a user would run it (``sakk demo``, consumers as processes), with every
logger at DEBUG; everything it prints and every log file it leaves is then searched for
each holder name and each account number of the reference data.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.config import PROJECT_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DEMO_PAYMENTS = 400
DEMO_TIMEOUT_S = 300
# The bank's own inbox stand-in (the log sender): a notification carries its accounts.
NOT_LOGS = {"notifications.jsonl"}


def test_the_demo_at_debug_logs_no_holder_name_and_no_full_account_number(tmp_path: Path):
    reference = json.loads((PROJECT_ROOT / "reference" / "morocco.json").read_text())
    holders = {a["holder"] for a in reference["accounts"]}
    numbers = {a["number"] for a in reference["accounts"]}
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAKK_")}
    env.update(SAKK_LOG_LEVEL="DEBUG", SAKK_DATA_DIR=str(tmp_path), SAKK_METRICS_PORT="0")
    demo = subprocess.run(
        [sys.executable, "-m", "sakk", "demo", "--payments", str(DEMO_PAYMENTS)],
        env=env,
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_S,
        cwd=tmp_path,
    )
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]
    captured = {"stdout": demo.stdout, "stderr": demo.stderr}
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.name not in NOT_LOGS and path.suffix in (".log", ".txt", ""):
            captured[str(path.relative_to(tmp_path))] = path.read_text(errors="replace")
    assert any("DEBUG" in text for text in captured.values()), "nothing was logged at DEBUG"
    leaks = [
        f"{where}: {what}"
        for where, text in captured.items()
        for what in sorted(holders | numbers)
        if what in text
    ]
    assert not leaks, leaks[:20]
