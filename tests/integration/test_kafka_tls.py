"""The whole flow over mutual TLS, on SQLite and PostgreSQL, and who is refused at the door.

The embedded broker runs behind stunnel (its own TLS does not work as shipped) with
certificates this module makes; the broker advertises stunnel's port, so every client
the flow makes (consumers, producers, the admin client) goes through
TLS with the client certificate ``CN=sakk``.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient
from kafka.errors import KafkaError
from sqlalchemy import select

from engine.config import Settings, load_settings
from engine.kafka.certificates import make_tls_files
from engine.kafka.client import make_admin
from engine.kafka.security import kafka_security_options
from engine.kafka.terminator import stunnel_missing
from engine.kafka.tls_broker import EmbeddedTlsBroker
from engine.ledger.checks import check_ledger, expected_notifications, flow_counts
from engine.ledger.models import Payment
from sakk.app import TOPOLOGY
from tests.factories import AMINA, KARIM, YOUSSEF, payment, switch_id, vignette

pytestmark = pytest.mark.integration

REFUSAL_TIMEOUT_MS = 3_000  # a refused client gives up bootstrapping after this
LOG_TIMEOUT_S = 10.0


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedTlsBroker]:
    reason = stunnel_missing()
    if reason:
        pytest.skip(f"Kafka over TLS needs a TLS terminator: {reason}")
    with EmbeddedTlsBroker(tmp_path_factory.mktemp("kafka-tls")) as broker:
        yield broker


@pytest.fixture
def broker(tls_broker: EmbeddedTlsBroker) -> EmbeddedTlsBroker:
    """The flows of this module (conftest's flow_factory) connect to the TLS port."""
    return tls_broker


def tls_settings(tls_broker: EmbeddedTlsBroker, client: str | None = "sakk") -> dict[str, object]:
    pair = tls_broker.client(client) if client else None
    return dict(
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=tls_broker.files.ca_file,
        kafka_ssl_certfile=pair.cert_file if pair else None,
        kafka_ssl_keyfile=pair.key_file if pair else None,
    )


def wait_for_log(tls_broker: EmbeddedTlsBroker, text: str, after: int = 0) -> None:
    """Wait until the terminator's log, from offset ``after``, says ``text``."""
    log = tls_broker.directory / "stunnel" / "stunnel.log"
    deadline = time.monotonic() + LOG_TIMEOUT_S
    while time.monotonic() < deadline:
        found = log.read_text(errors="replace")[after:] if log.exists() else ""
        if text in found:
            return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in the stunnel log within {LOG_TIMEOUT_S}s")


def log_size(tls_broker: EmbeddedTlsBroker) -> int:
    log = tls_broker.directory / "stunnel" / "stunnel.log"
    return len(log.read_text(errors="replace")) if log.exists() else 0


def bootstrap_refused(settings: Settings) -> KafkaError:
    """Assert a client with ``settings``' transport cannot even read the cluster metadata."""
    with pytest.raises(KafkaError) as caught:
        admin = KafkaAdminClient(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            client_id="test-refused",
            bootstrap_timeout_ms=REFUSAL_TIMEOUT_MS,
            request_timeout_ms=REFUSAL_TIMEOUT_MS,
            **kafka_security_options(settings),
        )
        admin.close()  # not reached when refused
    return caught.value


def drained(flow, published: int) -> bool:  # type: ignore[no-untyped-def]
    with flow.engine.connect() as conn:
        counts = flow_counts(conn, TOPOLOGY.entry.name)
        expected, finished = expected_notifications(conn)
    return counts.terminal + counts.dead_lettered >= published and finished >= expected


def test_whole_flow_over_mutual_tls_reaches_every_outcome(  # type: ignore[no-untyped-def]
    flow_factory, database_url: str, tls_broker: EmbeddedTlsBroker
) -> None:
    before = log_size(tls_broker)
    flow = flow_factory(database_url, **tls_settings(tls_broker))
    good = payment(AMINA, KARIM, 10_000)
    merchant = payment(YOUSSEF, KARIM, 5_000)
    tax = vignette(70_000, payer=AMINA)
    unknown = payment(AMINA, ("011", "011000000000000000000000"), 1_000)
    too_much = payment(KARIM, AMINA, 50_000)
    records = [good, merchant, tax, unknown, too_much]
    flow.publish(records)
    flow.wait_until(lambda: drained(flow, len(records)))

    with flow.engine.connect() as conn:
        rows = conn.execute(select(Payment.payment_id, Payment.state, Payment.reason_code))
        outcome = {r.payment_id: (r.state, r.reason_code) for r in rows}
        assert check_ledger(conn).ok
    assert outcome[switch_id(good)] == ("SETTLED", None)
    assert outcome[switch_id(merchant)] == ("SETTLED", None)
    assert outcome[switch_id(tax)] == ("SETTLED", None)
    assert outcome[switch_id(unknown)] == ("REJECTED", "AC01")
    assert outcome[switch_id(too_much)] == ("FAILED", "AM04")
    # Every byte went through the terminator, as the certificate's principal.
    wait_for_log(tls_broker, "Certificate accepted at depth=0: CN=sakk", before)


def test_broker_advertises_the_tls_port_only(tls_broker: EmbeddedTlsBroker) -> None:
    """Clients reconnect where the metadata says: through the terminator, never around it."""
    settings = load_settings(
        environ={},
        kafka_bootstrap_servers=tls_broker.bootstrap_servers,
        **tls_settings(tls_broker),
    )
    admin = make_admin(settings, "test-describe")
    try:
        brokers = admin.describe_cluster()["brokers"]
    finally:
        admin.close()
    assert [(b["host"], b["port"]) for b in brokers] == [("127.0.0.1", tls_broker.tls_port)]


def test_plaintext_client_is_refused(tls_broker: EmbeddedTlsBroker) -> None:
    before = log_size(tls_broker)
    plaintext = load_settings(environ={}, kafka_bootstrap_servers=tls_broker.bootstrap_servers)
    bootstrap_refused(plaintext)
    wait_for_log(tls_broker, "wrong version number", before)  # a TLS record expected


def test_client_without_a_certificate_is_refused(tls_broker: EmbeddedTlsBroker) -> None:
    before = log_size(tls_broker)
    anonymous = load_settings(
        environ={},
        kafka_bootstrap_servers=tls_broker.bootstrap_servers,
        **tls_settings(tls_broker, client=None),
    )
    bootstrap_refused(anonymous)
    wait_for_log(tls_broker, "peer did not return a certificate", before)


def test_client_certificate_of_another_ca_is_refused(
    tls_broker: EmbeddedTlsBroker, tmp_path: Path
) -> None:
    stranger = make_tls_files(tmp_path, clients=("sakk",)).clients["sakk"]  # same name, wrong CA
    before = log_size(tls_broker)
    forged = load_settings(
        environ={},
        kafka_bootstrap_servers=tls_broker.bootstrap_servers,
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=tls_broker.files.ca_file,
        kafka_ssl_certfile=stranger.cert_file,
        kafka_ssl_keyfile=stranger.key_file,
    )
    bootstrap_refused(forged)
    wait_for_log(tls_broker, "Rejected by CERT at depth=0: CN=sakk", before)


def test_client_refuses_a_broker_it_does_not_trust(
    tls_broker: EmbeddedTlsBroker, tmp_path: Path
) -> None:
    other_ca = make_tls_files(tmp_path, clients=()).ca_file
    distrustful = load_settings(
        environ={},
        kafka_bootstrap_servers=tls_broker.bootstrap_servers,
        **{**tls_settings(tls_broker), "kafka_ssl_cafile": other_ca},
    )
    bootstrap_refused(distrustful)
    context = ssl.create_default_context(cafile=str(other_ca))
    with (
        socket.create_connection(("127.0.0.1", tls_broker.tls_port), timeout=5) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        context.wrap_socket(raw, server_hostname="127.0.0.1")
