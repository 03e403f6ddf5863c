"""Database URLs as an auditor types them: a URL, or the path of a SQLite file."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import make_url


def as_database_url(text: str) -> str:
    """``postgresql+psycopg://...`` stays as it is; ``var/replay.db`` becomes ``sqlite:///...``."""
    if "://" in text:
        return text
    return f"sqlite:///{Path(text).expanduser().resolve()}"


def safe_url(url: str) -> str:
    """The URL with its password masked, fit to print."""
    return make_url(url).render_as_string(hide_password=True)
