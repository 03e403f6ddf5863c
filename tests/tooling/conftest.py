"""Fixtures the tooling's tests share."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from engine.config import Settings, load_settings
from engine.ledger.balances import all_balances
from engine.ledger.database import make_engine, upgrade
from engine.ledger.reference import load_reference_data, read_file
from tests.factories import REFERENCE_FILE


@pytest.fixture
def ledger(tmp_path: Path) -> tuple[Settings, Engine, dict[str, int]]:
    settings = load_settings(
        environ={},
        database_url=f"sqlite:///{tmp_path / 'l.db'}",
        data_dir=tmp_path,
        notify_log_path=tmp_path / "n.jsonl",
    )
    upgrade(settings.ledger_url)
    engine = make_engine(settings.ledger_url)
    load_reference_data(engine, read_file(REFERENCE_FILE))
    with engine.connect() as conn:
        balances = all_balances(conn)
    return settings, engine, balances
