"""SQLite's writers take turns through a lock file, so the lock passes on at once.

SQLite has one writer at a time. A writer that finds the database locked sleeps in its
busy handler (1, 2, 5, 10 … up to 100 ms between tries), so with the three stages and
the delivery loop all writing, the write lock often sits free while every writer
sleeps. Taking an ``flock`` on ``<ledger>.writer-lock`` first makes the writers queue in
the kernel instead: a waiter polls it every :data:`POLL_S` and begins its transaction
the moment the lock is free. SQLite's own locking still guarantees correctness; this
only makes the hand-over fast. The kernel drops the flock of a killed process.

Each connection opens the lock file once; a write transaction takes it at ``BEGIN
IMMEDIATE`` and gives it back when its ``COMMIT`` or ``ROLLBACK`` has returned.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from typing import Any

POLL_S = 0.0005  # how often a waiting writer retries the lock


class WriterLockTimeout(sqlite3.OperationalError):
    """The lock file stayed taken for the whole busy timeout: the database is locked."""


class LockingConnection(sqlite3.Connection):
    """A sqlite3 connection whose write transactions hold the ledger's writer lock."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lock_fd: int | None = None
        self._holding = False

    def use_lock_file(self, path: str) -> None:
        self._lock_fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    def take_writer_lock(self, timeout_s: float) -> None:
        if self._lock_fd is None or self._holding:
            return
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._holding = True
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise WriterLockTimeout(
                        f"database is locked: another writer held it for {timeout_s:.0f}s"
                    ) from None
                time.sleep(POLL_S)

    def release_writer_lock(self) -> None:
        if self._holding and self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            self._holding = False

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.release_writer_lock()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.release_writer_lock()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.release_writer_lock()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None
