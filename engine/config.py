"""One typed settings object, read from ``SAKK_*`` environment variables.

Every limit the engine obeys (batch sizes, retries, timeouts, message size) is
a field here with a stated bound, checked at start-up, so an operator finds a
bad value when the process starts rather than in the middle of the night.
"""

from __future__ import annotations

import dataclasses
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.pipeline.crash_points import CRASH_POINTS

PREFIX = "SAKK_"
PROJECT_ROOT = Path(__file__).resolve().parent.parent

# How long a hold may live, whoever sets it: a channel's ``hold_expiry_s`` in the reference
# data (engine.ledger.reference) or SAKK_HOLD_EXPIRY_S for a channel that names none.
MIN_HOLD_EXPIRY_S = 60
MAX_HOLD_EXPIRY_S = 90 * 24 * 3600


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

    # Kafka security (engine.kafka.security applies it to every client). PLAINTEXT, or SSL:
    # TLS to the broker, verified against kafka_ssl_cafile with the host name checked;
    # with a client certificate and key it is mutual TLS and the certificate names this
    # process's principal. Files are PEM; the key unencrypted, readable by its owner only.
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None

    # Database
    db_retry_max_attempts: int = field(default=120, metadata=_bounds(1, 1_000_000))
    db_retry_backoff_max_ms: int = field(default=5_000, metadata=_bounds(10, 300_000))
    db_pool_size: int = field(default=4, metadata=_bounds(1, 64))
    # Settlement folds the balance deltas (engine.ledger.balances) into the accounts at
    # most this often, at most balance_fold_max_rows deltas at a time.
    balance_fold_interval_ms: int = field(default=1_000, metadata=_bounds(10, 3_600_000))
    balance_fold_max_rows: int = field(default=50_000, metadata=_bounds(100, 10_000_000))

    # Validation
    max_event_age_s: int = field(default=7 * 24 * 3600, metadata=_bounds(1, 366 * 24 * 3600))
    max_event_skew_s: int = field(default=300, metadata=_bounds(0, 24 * 3600))
    # Reference data changed while running (engine.ledger.reference_versions): how often a
    # stage looks for a new version, and how long after it is announced a change takes
    # effect (more than the skew plus two refresh intervals, checked at start).
    reference_refresh_ms: int = field(default=5_000, metadata=_bounds(10, 300_000))
    reference_notice_s: int = field(default=360, metadata=_bounds(1, 30 * 24 * 3600))

    # Lifecycle: how long a hold lives when its channel's reference data says nothing, and
    # the expiry scheduler (consumers.expiry): how often it looks for holds past their
    # time, and the most expiries it publishes a round.
    hold_expiry_s: int = field(
        default=7 * 24 * 3600, metadata=_bounds(MIN_HOLD_EXPIRY_S, MAX_HOLD_EXPIRY_S)
    )
    expiry_interval_ms: int = field(default=1_000, metadata=_bounds(10, 3_600_000))
    expiry_batch_max: int = field(default=1_000, metadata=_bounds(1, 100_000))

    # Notification
    notify_sender: str = "log"
    notify_log_path: Path = PROJECT_ROOT / "var" / "notifications.jsonl"
    # The switch's own Ed25519 private keys (comma-separated files): every one signs each
    # webhook, so a rotation lists the old and the new key for as long as banks switch over.
    webhook_signing_key_files: str = ""
    webhook_timeout_ms: int = field(default=2_000, metadata=_bounds(50, 60_000))
    webhook_concurrency: int = field(default=16, metadata=_bounds(1, 256))
    # Delivery schedule (consumers.notify): one bounded attempt at a time, retried with
    # capped exponential backoff and jitter until the horizon, then FAILED.
    notify_retry_initial_ms: int = field(default=1_000, metadata=_bounds(10, 3_600_000))
    notify_retry_max_ms: int = field(default=1_800_000, metadata=_bounds(10, 86_400_000))
    notify_horizon_s: int = field(default=24 * 3600, metadata=_bounds(1, 30 * 24 * 3600))
    notify_max_in_flight_per_bank: int = field(default=4, metadata=_bounds(1, 256))
    notify_lease_s: int = field(default=30, metadata=_bounds(1, 3_600))
    notify_poll_interval_ms: int = field(default=200, metadata=_bounds(10, 60_000))
    notify_claim_max: int = field(default=500, metadata=_bounds(1, 10_000))

    # Bank side (producers): the bank's Ed25519 private key (PEM, owner-only), which signs
    # every payment the bank publishes; unset: ``sakk publish`` needs ``--signing-key``.
    signing_key_file: Path | None = None
    # The bank that key is (``--bank``): needed only when the key file's name does not
    # say it (``sakk keys generate BANK`` names it BANK-KEYID.key); a key signs for one bank.
    signing_bank: str = ""

    # Settlement windows (engine.risk.windows): a close waits this long after it is asked
    # for, so payments in flight finish in their window; the instruction (pacs.009) names
    # the switch's technical account, the settlement bank and its clearing system.
    settlement_close_delay_s: int = field(default=5, metadata=_bounds(0, 600))
    settlement_switch_code: str = "SAKK"
    settlement_bank_code: str = "BAM"
    settlement_clearing_system: str = "SRBM"

    # Metrics and health
    metrics_host: str = "127.0.0.1"
    metrics_port: int = field(default=9100, metadata=_bounds(0, 65_535))

    # Graceful shutdown
    shutdown_timeout_s: int = field(default=30, metadata=_bounds(1, 600))

    # Fault injection (the chaos harness only; off when empty): SIGKILL this process at
    # the named steps of the consumer loop (comma-separated, engine.pipeline.crash_points'
    # CRASH_POINTS), each pass with probability crash_probability_ppm / 1e6. Read once at start.
    crash_point: str = ""
    crash_probability_ppm: int = field(default=1_000_000, metadata=_bounds(0, 1_000_000))
    # A planted poison (the chaos harness and tests only; off when empty): SIGKILL this
    # process when it reads a message whose bytes contain this text, before decoding it.
    crash_on_message_containing: str = ""

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

    @property
    def webhook_signing_keys(self) -> list[Path]:
        return [Path(p.strip()) for p in self.webhook_signing_key_files.split(",") if p.strip()]

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
    if kind == "Path | None":
        return Path(raw) if raw else None
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
    check_kafka_security(settings)
    return settings


KAFKA_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL")
_KAFKA_SSL_FILES = ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile")


def check_kafka_security(settings: Settings) -> None:
    """Refuse a transport setting that would fail later, or silently fall back to plaintext.

    The files are loaded into a TLS context here, so a wrong file, a key that does not
    match its certificate or an unreadable path stops the process at start, naming the
    variable. Raises :class:`SettingsError`.
    """
    protocol = settings.kafka_security_protocol
    if protocol not in KAFKA_SECURITY_PROTOCOLS:
        raise SettingsError(
            f"{PREFIX}KAFKA_SECURITY_PROTOCOL={protocol!r}: expected one of "
            f"{', '.join(KAFKA_SECURITY_PROTOCOLS)}"
        )
    given = [name for name in _KAFKA_SSL_FILES if getattr(settings, name) is not None]
    if protocol == "PLAINTEXT":
        if given:
            raise SettingsError(
                f"{PREFIX}{given[0].upper()} is set but {PREFIX}KAFKA_SECURITY_PROTOCOL=PLAINTEXT:"
                " set it to SSL to use TLS, or unset the file"
            )
        return
    _check_ssl_settings(settings)
    for name in given:
        _check_readable_file(name, getattr(settings, name))
    _check_loads_as_tls(settings)


def _check_ssl_settings(settings: Settings) -> None:
    """SSL: a real broker, its CA, and a client certificate with its key or neither."""
    if settings.uses_embedded_broker:
        raise SettingsError(
            f"{PREFIX}KAFKA_SECURITY_PROTOCOL=SSL needs {PREFIX}KAFKA_BOOTSTRAP_SERVERS: the "
            "embedded broker speaks plaintext (`sakk demo --tls` puts a TLS terminator before it)"
        )
    if settings.kafka_ssl_cafile is None:
        raise SettingsError(
            f"{PREFIX}KAFKA_SSL_CAFILE must be set when {PREFIX}KAFKA_SECURITY_PROTOCOL=SSL: "
            "the CA that signed the broker's certificate"
        )
    if (settings.kafka_ssl_certfile is None) != (settings.kafka_ssl_keyfile is None):
        have, lack = (
            ("CERTFILE", "KEYFILE")
            if settings.kafka_ssl_keyfile is None
            else ("KEYFILE", "CERTFILE")
        )
        raise SettingsError(
            f"{PREFIX}KAFKA_SSL_{have} is set without {PREFIX}KAFKA_SSL_{lack}: a client "
            "certificate and its private key go together"
        )


def _check_readable_file(name: str, path: Path) -> None:
    variable = f"{PREFIX}{name.upper()}"
    if not path.is_file():
        raise SettingsError(f"{variable}={path}: no such file")
    if not os.access(path, os.R_OK):
        raise SettingsError(f"{variable}={path}: not readable by this process (uid {os.getuid()})")


def _check_loads_as_tls(settings: Settings) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cafile=str(settings.kafka_ssl_cafile))
    except (ssl.SSLError, ValueError) as exc:
        raise SettingsError(
            f"{PREFIX}KAFKA_SSL_CAFILE={settings.kafka_ssl_cafile}: not a PEM certificate ({exc})"
        ) from None
    if settings.kafka_ssl_certfile is None or settings.kafka_ssl_keyfile is None:
        return
    try:
        context.load_cert_chain(
            str(settings.kafka_ssl_certfile),
            str(settings.kafka_ssl_keyfile),
            password=_no_key_password,  # an encrypted key fails here instead of prompting
        )
    except (ssl.SSLError, ValueError) as exc:
        raise SettingsError(
            f"{PREFIX}KAFKA_SSL_CERTFILE={settings.kafka_ssl_certfile} and "
            f"{PREFIX}KAFKA_SSL_KEYFILE={settings.kafka_ssl_keyfile}: not a PEM certificate "
            f"with its matching unencrypted private key ({exc})"
        ) from None


def _no_key_password() -> bytes:
    return b""


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
    _check_reference_notice(settings)
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
            f"{PREFIX}WEBHOOK_TIMEOUT_MS={settings.webhook_timeout_ms}: "
            "a claim outlives its attempt"
        )
    _check_crash_points(settings)
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


MAX_WEBHOOK_SIGNING_KEYS = 2  # the current key, and the next one during a rotation


def _check_reference_notice(settings: Settings) -> None:
    """A change takes effect after every stage has seen it (engine.ledger.reference_versions)."""
    needed_ms = settings.max_event_skew_s * 1000 + 2 * settings.reference_refresh_ms
    if settings.reference_notice_s * 1000 <= needed_ms:
        raise SettingsError(
            f"{PREFIX}REFERENCE_NOTICE_S={settings.reference_notice_s} must exceed "
            f"{PREFIX}MAX_EVENT_SKEW_S plus twice {PREFIX}REFERENCE_REFRESH_MS ({needed_ms} ms)"
        )


def _check_crash_points(settings: Settings) -> None:
    """SAKK_CRASH_POINT names only steps the loops know (the fault-injection hooks)."""
    unknown_points = set(settings.crash_point.split(",")) - set(CRASH_POINTS) - {""}
    if unknown_points:
        raise SettingsError(
            f"{PREFIX}CRASH_POINT={settings.crash_point!r}: unknown {sorted(unknown_points)}, "
            f"expected names from {', '.join(CRASH_POINTS)}"
        )


def check_notify_sender(settings: Settings) -> None:
    """Refuse a notification sender that cannot work: a webhook sender without the switch's key.

    Checked where the sender is built (and by ``sakk run`` before it starts), not at every
    start-up: ``sakk broker`` or ``sakk keys generate switch`` send no notification.
    """
    if settings.notify_sender == "webhook":
        _check_signing_key_files(settings)


def _check_signing_key_files(settings: Settings) -> None:
    name = f"{PREFIX}WEBHOOK_SIGNING_KEY_FILES"
    paths = settings.webhook_signing_keys
    if not paths:
        raise SettingsError(
            f"{name} must name the switch's signing key when {PREFIX}NOTIFY_SENDER=webhook "
            f"(make one: sakk keys generate switch --out DIR)"
        )
    if len(paths) > MAX_WEBHOOK_SIGNING_KEYS:
        raise SettingsError(f"{name}: at most {MAX_WEBHOOK_SIGNING_KEYS} keys (a rotation)")
    for path in paths:
        if not path.is_file() or not os.access(path, os.R_OK):
            raise SettingsError(f"{name}: {path} is not a readable file")
