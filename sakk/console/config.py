"""The console's settings: every limit explicit, with the reason for its default."""

from __future__ import annotations

from dataclasses import dataclass

from engine.read.snapshot import MAX_STATEMENT_TIMEOUT_MS, STATEMENT_TIMEOUT_MS


class ConsoleConfigError(ValueError):
    """A console setting out of its bounds."""


@dataclass(frozen=True)
class ConsoleConfig:
    database_url: str
    session_ttl_s: int = 8 * 3600  # a working day: a session ends then, whatever its use
    secure_cookies: bool = True  # the session cookie only over HTTPS (off: plain local HTTP)
    login_max_failures: int = 5  # refused sign-ins per name, and per client address ...
    login_window_s: int = 300  # ... within this many seconds; then 429 until they age out
    login_tracked_keys: int = 10_000  # names and addresses remembered at most (oldest go)
    proposal_ttl_s: int = 24 * 3600  # a four-eyes proposal not approved by then expires
    statement_timeout_ms: int = STATEMENT_TIMEOUT_MS  # a screen's query runs at most this
    db_pool_size: int = 4
    max_body_bytes: int = 1_048_576  # a request body larger than this is refused (413)
    lag_timeout_ms: int = 2_000  # the overview waits this long for the broker's lag, then "unknown"

    def __post_init__(self) -> None:
        bounds = {
            "session_ttl_s": (60, 7 * 86_400),
            "login_max_failures": (1, 1_000),
            "login_window_s": (1, 86_400),
            "login_tracked_keys": (10, 10_000_000),
            "proposal_ttl_s": (60, 30 * 86_400),
            "statement_timeout_ms": (1, MAX_STATEMENT_TIMEOUT_MS),
            "db_pool_size": (1, 100),
            "max_body_bytes": (1_024, 64 * 1_048_576),
            "lag_timeout_ms": (100, 30_000),
        }
        for name, (low, high) in bounds.items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise ConsoleConfigError(f"{name}={value}: expected {low}..{high}")
        if not self.database_url:
            raise ConsoleConfigError("database_url: the ledger to read")
