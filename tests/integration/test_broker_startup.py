"""``sakk broker`` starts with SAKK_NOTIFY_SENDER=webhook and no switch key: it sends nothing."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.integration

START_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_sakk_broker_starts_with_a_webhook_sender_and_no_switch_key(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAKK_")}
    env |= {"SAKK_NOTIFY_SENDER": "webhook", "SAKK_DATA_DIR": str(tmp_path)}
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sakk", "broker", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        line = ""
        while time.monotonic() < deadline and proc.poll() is None:
            line = proc.stdout.readline() if proc.stdout else ""
            if "embedded broker on" in line:
                break
        assert "embedded broker on" in line, proc.stderr.read() if proc.poll() is not None else line
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
