"""Settings: errors name the variable at fault; secrets are never printed."""

from __future__ import annotations

import pytest

from engine.config import SettingsError, check_notify_sender, load_settings


def test_defaults_use_embedded_broker_and_sqlite():
    settings = load_settings(environ={})
    assert settings.uses_embedded_broker
    assert settings.ledger_url.startswith("sqlite:///")


def test_environment_variables_are_read_with_the_prefix():
    settings = load_settings(
        environ={
            "SAKK_TOPIC_PARTITIONS": "12",
            "SAKK_DATABASE_URL": "postgresql+psycopg://u:pw@h/db",
        }
    )
    assert settings.topic_partitions == 12
    assert settings.ledger_url == "postgresql+psycopg://u:pw@h/db"


def test_non_integer_names_the_variable():
    with pytest.raises(SettingsError, match="SAKK_BATCH_MAX_RECORDS"):
        load_settings(environ={"SAKK_BATCH_MAX_RECORDS": "many"})


def test_out_of_bounds_names_the_variable_and_the_bounds():
    with pytest.raises(SettingsError, match=r"SAKK_BATCH_MAX_RECORDS=0 is outside \[1, 10000\]"):
        load_settings(environ={"SAKK_BATCH_MAX_RECORDS": "0"})


def test_webhook_sender_requires_the_switch_signing_key(tmp_path):
    with pytest.raises(SettingsError, match="SAKK_WEBHOOK_SIGNING_KEY_FILES must name"):
        check_notify_sender(load_settings(environ={"SAKK_NOTIFY_SENDER": "webhook"}))
    missing = tmp_path / "absent.pem"
    with pytest.raises(SettingsError, match="absent.pem is not a readable file"):
        check_notify_sender(
            load_settings(
                environ={
                    "SAKK_NOTIFY_SENDER": "webhook",
                    "SAKK_WEBHOOK_SIGNING_KEY_FILES": str(missing),
                }
            )
        )


def test_webhook_sender_without_its_key_loads_for_commands_that_send_nothing():
    settings = load_settings(environ={"SAKK_NOTIFY_SENDER": "webhook"})
    assert settings.notify_sender == "webhook"


def test_secrets_and_passwords_are_masked():
    settings = load_settings(
        environ={
            "SAKK_DATABASE_URL": "postgresql://sakk:pw@db/sakk",
        }
    )
    shown = settings.redacted()
    assert "pw@" not in str(shown)
