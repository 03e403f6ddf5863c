"""Each command checks only the settings it uses: a webhook sender without its key stops
``sakk run notification``, not the commands that send no notification."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner, Result

import sakk.cli.broker  # noqa: F401  (registers the commands)
import sakk.cli.keys  # noqa: F401
import sakk.cli.run  # noqa: F401
from sakk.cli import cli

WEBHOOK_WITHOUT_KEY = {
    "SAKK_NOTIFY_SENDER": "webhook",
    "SAKK_WEBHOOK_SIGNING_KEY_FILES": "",
    "SAKK_LOG_LEVEL": "WARNING",
}


def sakk(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env=WEBHOOK_WITHOUT_KEY)


def test_keys_generate_switch_works_before_the_switch_has_its_key(tmp_path: Path):
    result = sakk("keys", "generate", "switch", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert len(list(tmp_path.glob("switch-*.key"))) == 1


def test_broker_starts_without_the_switch_key():
    result = sakk("broker", "--help")
    assert result.exit_code == 0, result.output
    assert "embedded broker" in result.output


def test_run_notification_refuses_without_the_switch_key_naming_the_variable():
    result = sakk("run", "notification")
    assert result.exit_code == 2
    assert "SAKK_WEBHOOK_SIGNING_KEY_FILES must name" in result.output
    assert "sakk keys generate switch" in result.output


def test_consumers_with_a_notification_stage_refuse_before_any_thread_starts():
    import threading

    import pytest

    from engine.config import SettingsError, load_settings
    from sakk.app import run_consumers

    settings = load_settings(environ=WEBHOOK_WITHOUT_KEY)
    before = threading.active_count()
    with pytest.raises(SettingsError, match="SAKK_WEBHOOK_SIGNING_KEY_FILES must name"):
        run_consumers(settings, ("validator", "settlement", "notification"), threading.Event())
    assert threading.active_count() == before
