"""Logging for every ``sakk`` process: one format, and no personal data in any line.

Holders' names never reach a log line (no code logs them); full account numbers could,
quoted inside an exception's text, so every line, arguments and traceback included,
goes through :func:`engine.masking.mask_text` on its way out, and the database engine
never renders statement parameters into its errors (``hide_parameters``).
"""

from __future__ import annotations

import logging

from engine.masking import mask_text

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
QUIET = {
    "kafka": logging.WARNING,
    # kafka-python 3 warns whenever its IO loop is held >100 ms (the GIL is busy): noise here.
    "kafka.net.selector": logging.ERROR,
    "alembic": logging.WARNING,
}


class MaskingFormatter(logging.Formatter):
    """Formats as usual, then masks account-like digit runs in the whole text."""

    def format(self, record: logging.LogRecord) -> str:
        return mask_text(super().format(record))


def configure(level: str) -> None:
    """Root logging to stderr at ``level``, masked; library loggers kept quiet."""
    handler = logging.StreamHandler()
    handler.setFormatter(MaskingFormatter(FORMAT))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name, quiet_level in QUIET.items():
        logging.getLogger(name).setLevel(quiet_level)
