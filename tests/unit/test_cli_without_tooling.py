"""Without the development tools (the production image leaves ``tooling`` out), the
operators' commands still start, and ``sakk demo``/``bench``/``chaos``/``simulate`` say
how to install them instead of failing with a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

DEV_COMMANDS = ("demo", "bench", "chaos", "simulate")

# ``None`` in sys.modules makes every import of the package fail as if it were absent.
WITHOUT_TOOLING = (
    "import sys\n"
    "sys.modules['tooling'] = None\n"
    "sys.argv = ['sakk', *sys.argv[1:]]\n"
    "from sakk.cli import main\n"
    "main()\n"
)


def sakk_without_tooling(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SAKK_LOG_LEVEL": "WARNING"}
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_TOOLING, *args],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.parametrize("command", DEV_COMMANDS)
def test_a_development_command_without_tooling_says_how_to_install_it(command: str):
    done = sakk_without_tooling(command, "--payments", "10")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert f"`sakk {command}` needs the development tools" in done.stderr
    assert "pip install -e '.[dev]' -e ./tooling" in done.stderr


def test_the_operators_commands_start_without_tooling():
    done = sakk_without_tooling("--help")
    assert done.returncode == 0, done.stderr
    assert "trace" in done.stdout and "audit" in done.stdout
    done = sakk_without_tooling("audit", "--help")
    assert done.returncode == 0, done.stderr


def test_another_missing_module_is_not_mistaken_for_missing_tooling():
    from sakk.cli import missing_tooling

    assert missing_tooling(ModuleNotFoundError(name="tooling.chaos"))
    assert not missing_tooling(ModuleNotFoundError(name="toolingx"))
    assert not missing_tooling(ModuleNotFoundError(name="confluent_kafka"))
