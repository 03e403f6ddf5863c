"""SAKK_CRASH_POINT: off by default, validated at start-up, a real SIGKILL when armed."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from engine.config import SettingsError, load_settings
from engine.pipeline.crash import CrashPoints
from engine.pipeline.crash_points import CRASH_POINTS


def test_crash_points_are_off_by_default():
    crash = CrashPoints(load_settings(environ={}))
    for point in CRASH_POINTS:
        crash(point)  # still alive


def test_unknown_crash_point_is_refused_at_start_naming_the_variable():
    with pytest.raises(SettingsError, match="SAKK_CRASH_POINT"):
        load_settings(environ={"SAKK_CRASH_POINT": "after_db_commit,before_lunch"})


def test_probability_is_bounded():
    with pytest.raises(SettingsError, match="SAKK_CRASH_PROBABILITY_PPM"):
        load_settings(environ={"SAKK_CRASH_PROBABILITY_PPM": "1000001"})


def test_zero_probability_never_fires():
    crash = CrashPoints(
        load_settings(
            environ={"SAKK_CRASH_POINT": "after_produce", "SAKK_CRASH_PROBABILITY_PPM": "0"}
        )
    )
    for _ in range(1000):
        crash("after_produce")


def test_an_armed_point_kills_the_process_with_sigkill_and_only_there():
    script = (
        "from engine.config import load_settings\n"
        "from engine.pipeline.crash import CrashPoints\n"
        "crash = CrashPoints(load_settings())\n"
        "crash('after_db_commit')\n"
        "print('passed after_db_commit', flush=True)\n"
        "crash('after_produce')\n"
        "print('survived', flush=True)\n"
    )
    env = {"SAKK_CRASH_POINT": "after_produce", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == -signal.SIGKILL
    assert done.stdout.split("\n")[0] == "passed after_db_commit"
    assert "survived" not in done.stdout
