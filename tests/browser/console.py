"""A real ``sakk console`` for the browser tests: a uvicorn process on a free port over a
ledger the test prepared, its users made with ``sakk users add`` as on the switch's machine,
and a person signing in through the login form."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
COMMAND_TIMEOUT_S = 120.0
POLL_S = 0.1
PASSWORD = "correct horse battery staple"  # the console's policy: at least 12 characters


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sakk_env(**extra: str) -> dict[str, str]:
    """The environment a ``sakk`` command gets: no SAKK_ setting of the test run's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAKK_")}
    env.update(SAKK_LOG_LEVEL="WARNING", **extra)
    return env


def sakk(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> str:
    """Run ``sakk ARGS`` as an operator on the switch's machine would; its output."""
    run = subprocess.run(
        [sys.executable, "-m", "sakk", *args], input=stdin, capture_output=True, text=True,
        env=env or sakk_env(), timeout=COMMAND_TIMEOUT_S,
    )  # fmt: skip
    if run.returncode != 0:
        raise AssertionError(f"sakk {' '.join(args)} failed: {run.stdout}{run.stderr}")
    return run.stdout


def add_user(database_url: str, name: str, role: str, bank: str | None = None) -> None:
    bank_args = ["--bank", bank] if bank else []
    sakk("users", "add", name, "--role", role, *bank_args, "--database-url", database_url,
         "--by", "bootstrap", stdin=PASSWORD + "\n")  # fmt: skip


@dataclass
class Console:
    url: str
    process: subprocess.Popen[str]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT_S)


def start_console(database_url: str, log: Path, **env: str) -> Console:
    """``sakk console`` on a free port; returns once its sign-in page answers."""
    port = free_port()
    handle = log.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "sakk", "console", "--database-url", database_url,
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=handle, stderr=subprocess.STDOUT, text=True, env=sakk_env(**env),
    )  # fmt: skip
    console = Console(f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"sakk console exited {process.returncode}: {log.read_text()}")
        try:
            with urllib.request.urlopen(f"{console.url}/login", timeout=2) as answer:
                if answer.status == 200:
                    return console
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(POLL_S)
    console.stop()
    raise AssertionError(
        f"sakk console did not answer within {START_TIMEOUT_S}s: {log.read_text()}"
    )


def sign_in(page: Any, console: Console, name: str, password: str = PASSWORD) -> None:
    """Sign in through the form, as a person does; lands on the overview."""
    page.goto(f"{console.url}/login")
    page.get_by_label("Name").fill(name)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{console.url}/")
