"""One typed settings object, read from ``SAKK_*`` environment variables.

Every limit the engine obeys (batch sizes, retries, timeouts, message size) is
a field here with a stated bound, checked at start-up, so an operator finds a
bad value when the process starts rather than in the middle of the night.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PREFIX = "SAKK_"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Steps of engine.runtime where SAKK_CRASH_POINT may kill the process (fault injection).
CRASH_POINTS = ("before_db_commit", "after_db_commit", "after_complete", "after_produce")


class SettingsError(ValueError):
    """A ``SAKK_*`` variable holds a value the engine cannot run with."""


def _bounds(lo: int, hi: int) -> dict[str, Any]:
    """Field metadata: the inclusive range a setting must lie in, checked at start-up."""
    return {"bounds": (lo, hi)}


@dataclass(frozen=True)
class Settings:
    """Configuration of one Sakk process.

    Empty ``kafka_bootstrap_servers`` means "start the embedded broker";
    empty ``database_url`` means "the SQLite ledger under ``data_dir``".
    """

    kafka_bootstrap_servers: str = ""
    database_url: str = ""
    data_dir: Path = PROJECT_ROOT / "var"
    schemas_dir: Path = PROJECT_ROOT / "schemas"
    reference_file: Path = PROJECT_ROOT / "reference" / "morocco.json"
    log_level: str = "INFO"

    # Topics
    topic_prefix: str = "payments"
    topic_partitions: int = field(default=6, metadata=_bounds(1, 1024))
    topic_replication_factor: int = field(default=1, metadata=_bounds(1, 5))
    consumer_group_prefix: str = "sakk"

    # Kafka consumer
    batch_max_records: int = field(default=500, metadata=_bounds(1, 10_000))
    poll_timeout_ms: int = field(default=200, metadata=_bounds(10, 30_000))
    session_timeout_ms: int = field(default=6_000, metadata=_bounds(1_000, 300_000))
    heartbeat_interval_ms: int = field(default=1_000, metadata=_bounds(100, 60_000))
    max_poll_interval_ms: int = field(default=300_000, metadata=_bounds(10_000, 3_600_000))
    fetch_max_wait_ms: int = field(default=100, metadata=_bounds(1, 10_000))
    fetch_max_bytes: int = field(
        default=16 * 1024 * 1024, metadata=_bounds(1024, 512 * 1024 * 1024)
    )

    # Kafka producer
    linger_ms: int = field(default=5, metadata=_bounds(0, 1_000))
    producer_batch_size_bytes: int = field(
        default=256 * 1024, metadata=_bounds(1024, 16 * 1024 * 1024)
    )
    max_message_bytes: int = field(default=1024 * 1024, metadata=_bounds(1024, 16 * 1024 * 1024))
    produce_timeout_s: int = field(default=60, metadata=_bounds(1, 600))
    request_timeout_ms: int = field(default=30_000, metadata=_bounds(1_000, 300_000))

    # Database
    db_retry_max_attempts: int = field(default=120, metadata=_bounds(1, 1_000_000))
    db_retry_backoff_max_ms: int = field(default=5_000, metadata=_bounds(10, 300_000))
    db_pool_size: int = field(default=4, metadata=_bounds(1, 64))

    # Validation
    max_event_age_s: int = field(default=7 * 24 * 3600, metadata=_bounds(1, 366 * 24 * 3600))
    max_event_skew_s: int = field(default=300, metadata=_bounds(0, 24 * 3600))

    # Notification
    notify_sender: str = "log"
    notify_log_path: Path = PROJECT_ROOT / "var" / "notifications.jsonl"
    webhook_secret: str = field(default="", repr=False)
    webhook_timeout_ms: int = field(default=2_000, metadata=_bounds(50, 60_000))
    webhook_concurrency: int = field(default=16, metadata=_bounds(1, 256))
    # Delivery schedule (consumers.delivery): one bounded attempt at a time, retried with
    # capped exponential backoff and jitter until the horizon, then FAILED.
    notify_retry_initial_ms: int = field(default=1_000, metadata=_bounds(10, 3_600_000))
    notify_retry_max_ms: int = field(default=1_800_000, metadata=_bounds(10, 86_400_000))
    notify_horizon_s: int = field(default=24 * 3600, metadata=_bounds(1, 30 * 24 * 3600))
    notify_max_in_flight_per_bank: int = field(default=4, metadata=_bounds(1, 256))
    notify_lease_s: int = field(default=30, metadata=_bounds(1, 3_600))
    notify_poll_interval_ms: int = field(default=200, metadata=_bounds(10, 60_000))
    notify_claim_max: int = field(default=500, metadata=_bounds(1, 10_000))

    # Metrics and health
    metrics_host: str = "127.0.0.1"
    metrics_port: int = field(default=9100, metadata=_bounds(0, 65_535))

    # Graceful shutdown
    shutdown_timeout_s: int = field(default=30, metadata=_bounds(1, 600))

    # Fault injection (the chaos harness only; off when empty): SIGKILL this process at
    # the named steps of the consumer loop (comma-separated, see CRASH_POINTS), each pass
    # with probability crash_probability_ppm / 1e6. Read once at start.
    crash_point: str = ""
    crash_probability_ppm: int = field(default=1_000_000, metadata=_bounds(0, 1_000_000))

    @property
    def uses_embedded_broker(self) -> bool:
        return not self.kafka_bootstrap_servers

    @property
    def ledger_url(self) -> str:
        """The SQLAlchemy URL of the ledger; SQLite under ``data_dir`` by default."""
        return self.database_url or f"sqlite:///{self.data_dir / 'ledger.db'}"

    def topic(self, name: str) -> str:
        """Full topic name of a stage, e.g. ``topic("initiated")`` -> ``payments.initiated``."""
        return f"{self.topic_prefix}.{name}"

    def group(self, consumer_name: str) -> str:
        return f"{self.consumer_group_prefix}.{consumer_name}"

    def redacted(self) -> dict[str, str]:
        """Settings as printable strings, secrets masked."""
        shown = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not f.repr and value:
                value = "********"
            elif f.name == "database_url" and value:
                value = _mask_url_password(str(value))
            shown[f.name] = str(value)
        return shown

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def _mask_url_password(url: str) -> str:
    if "://" not in url or "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    if ":" in creds:
        creds = creds.split(":", 1)[0] + ":********"
    return f"{scheme}://{creds}@{host}"


def _parse(name: str, raw: str, kind: Any) -> Any:
    env_name = PREFIX + name.upper()
    if kind in (int, "int"):
        try:
            return int(raw)
        except ValueError:
            raise SettingsError(f"{env_name}={raw!r} is not an integer") from None
    if kind in (Path, "Path"):
        return Path(raw)
    return raw


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Read settings from ``environ`` (default ``os.environ``), then apply ``overrides``.

    Raises :class:`SettingsError` naming the variable at fault.
    """
    environ = os.environ if environ is None else environ
    known = {f.name: f for f in dataclasses.fields(Settings)}
    values: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(PREFIX):
            continue
        name = key[len(PREFIX) :].lower()
        if name not in known:
            continue  # other tools share the prefix (SAKK_TEST_*); ignore
        values[name] = _parse(name, raw, known[name].type)
    values.update(overrides)
    settings = Settings(**values)
    _check_bounds(settings)
    return settings


def _check_bounds(settings: Settings) -> None:
    for f in dataclasses.fields(settings):
        bounds = f.metadata.get("bounds")
        if bounds is None:
            continue
        value = getattr(settings, f.name)
        lo, hi = bounds
        if not lo <= value <= hi:
            raise SettingsError(f"{PREFIX}{f.name.upper()}={value} is outside [{lo}, {hi}]")
    if settings.notify_sender not in ("log", "webhook"):
        raise SettingsError(
            f"{PREFIX}NOTIFY_SENDER={settings.notify_sender!r}: expected 'log' or 'webhook'"
        )
    if settings.notify_sender == "webhook" and not settings.webhook_secret:
        raise SettingsError(
            f"{PREFIX}WEBHOOK_SECRET must be set when {PREFIX}NOTIFY_SENDER=webhook"
        )
    if settings.notify_retry_initial_ms > settings.notify_retry_max_ms:
        raise SettingsError(
            f"{PREFIX}NOTIFY_RETRY_INITIAL_MS={settings.notify_retry_initial_ms} must not exceed "
            f"{PREFIX}NOTIFY_RETRY_MAX_MS={settings.notify_retry_max_ms}"
        )
    if settings.notify_max_in_flight_per_bank > settings.webhook_concurrency:
        raise SettingsError(
            f"{PREFIX}NOTIFY_MAX_IN_FLIGHT_PER_BANK={settings.notify_max_in_flight_per_bank} "
            f"must not exceed {PREFIX}WEBHOOK_CONCURRENCY={settings.webhook_concurrency}"
        )
    if settings.notify_lease_s * 1000 <= 2 * settings.webhook_timeout_ms:
        raise SettingsError(
            f"{PREFIX}NOTIFY_LEASE_S={settings.notify_lease_s} must exceed twice "
            f"{PREFIX}WEBHOOK_TIMEOUT_MS={settings.webhook_timeout_ms}: a claim outlives its attempt"
        )
    unknown_points = set(settings.crash_point.split(",")) - set(CRASH_POINTS) - {""}
    if unknown_points:
        raise SettingsError(
            f"{PREFIX}CRASH_POINT={settings.crash_point!r}: unknown {sorted(unknown_points)}, "
            f"expected names from {', '.join(CRASH_POINTS)}"
        )
    if settings.produce_timeout_s * 1000 < settings.linger_ms + settings.request_timeout_ms:
        raise SettingsError(
            f"{PREFIX}PRODUCE_TIMEOUT_S={settings.produce_timeout_s} must cover "
            f"{PREFIX}LINGER_MS + {PREFIX}REQUEST_TIMEOUT_MS "
            f"({settings.linger_ms + settings.request_timeout_ms} ms)"
        )
    if settings.heartbeat_interval_ms * 3 > settings.session_timeout_ms:
        raise SettingsError(
            f"{PREFIX}HEARTBEAT_INTERVAL_MS={settings.heartbeat_interval_ms} must be at most a "
            f"third of {PREFIX}SESSION_TIMEOUT_MS={settings.session_timeout_ms}"
        )
