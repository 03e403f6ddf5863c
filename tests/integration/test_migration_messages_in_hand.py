"""Migration 0011 (messages in hand) goes up and down on both databases."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import inspect

from engine.ledger.database import alembic_config, make_engine, upgrade

pytestmark = pytest.mark.integration


def tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_messages_in_hand_comes_with_0011_and_goes_with_its_downgrade(database_url):
    upgrade(database_url, "0011")
    assert "messages_in_hand" in tables(database_url)
    engine = make_engine(database_url)
    columns = {c["name"] for c in inspect(engine).get_columns("messages_in_hand")}
    engine.dispose()
    assert columns == {"consumer", "topic", "partition", "first_offset", "last_offset",
                       "deaths", "suspect_until", "owner", "marked_at"}  # fmt: skip
    command.downgrade(alembic_config(database_url), "0010")
    assert "messages_in_hand" not in tables(database_url)
    assert "dead_letters" in tables(database_url)
    upgrade(database_url, "0011")
    assert "messages_in_hand" in tables(database_url)
