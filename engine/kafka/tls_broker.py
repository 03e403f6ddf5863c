"""The embedded broker behind a TLS terminator, with certificates made on the spot.

``sakk demo --tls`` and the TLS tests run the whole flow this way: a throwaway CA
(``engine.kafka.certificates``), Tansu on a loopback port advertising the terminator's
port, and stunnel (``engine.kafka.terminator``) requiring a client certificate signed by
that CA. A client that speaks plaintext, or TLS without a certificate, is refused at
the terminator; one bootstrapping to the broker's own port is told to reconnect through
the terminator. For demos and tests: the broker keeps everything in memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from engine.config import Settings, check_kafka_security
from engine.kafka.certificates import KeyPair, TlsFiles, make_tls_files
from engine.kafka.embedded import EmbeddedBroker, free_port
from engine.kafka.exceptions import TlsTerminatorError
from engine.kafka.terminator import TerminatorConfig, TlsTerminator

HOST = "127.0.0.1"
DEFAULT_CLIENT = "sakk"
PORT_ATTEMPTS = 3  # a free port can be taken by another process before stunnel binds it


class EmbeddedTlsBroker:
    """Certificates, the embedded broker and its TLS terminator, started and stopped together."""

    def __init__(
        self,
        directory: Path,
        clients: Sequence[str] = (DEFAULT_CLIENT,),
        require_client_cert: bool = True,
    ):
        self.directory = directory
        self._clients = tuple(clients)
        self._require_client_cert = require_client_cert
        self.tls_port = 0  # chosen at start, when stunnel binds it
        self.broker_port = free_port(HOST)
        self.broker: EmbeddedBroker | None = None
        self._files: TlsFiles | None = None
        self._terminator: TlsTerminator | None = None

    @property
    def bootstrap_servers(self) -> str:
        """The TLS address: the only one the broker advertises."""
        return f"{HOST}:{self.tls_port}"

    @property
    def plaintext_bootstrap_servers(self) -> str:
        """The broker's own plaintext port (loopback): it sends clients on to the TLS port."""
        return f"{HOST}:{self.broker_port}"

    @property
    def files(self) -> TlsFiles:
        if self._files is None:
            raise RuntimeError("EmbeddedTlsBroker not started")
        return self._files

    def client(self, name: str = DEFAULT_CLIENT) -> KeyPair:
        return self.files.clients[name]

    def start(self) -> EmbeddedTlsBroker:
        """Certificates, then stunnel (it dials the broker per connection), then the broker."""
        files = make_tls_files(
            self.directory / "certs", server_hosts=(HOST, "localhost"), clients=self._clients
        )
        self._files = files
        self._terminator = self._start_terminator(files)
        try:
            self.broker = EmbeddedBroker(
                port=self.broker_port,
                host=HOST,
                log_path=self.directory / "broker.log",
                advertised_port=self.tls_port,
            ).start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_terminator(self, files: TlsFiles) -> TlsTerminator:
        for _ in range(PORT_ATTEMPTS):
            self.tls_port = free_port(HOST)
            config = TerminatorConfig(
                listen_host=HOST,
                listen_port=self.tls_port,
                target_host=HOST,
                target_port=self.broker_port,
                cert_file=files.server.cert_file,
                key_file=files.server.key_file,
                ca_file=files.ca_file,
                require_client_cert=self._require_client_cert,
            )
            try:
                return TlsTerminator(config, self.directory / "stunnel").start()
            except TlsTerminatorError as exc:
                failure = exc
        raise TlsTerminatorError(f"stunnel did not start in {PORT_ATTEMPTS} attempts: {failure}")

    def stop(self) -> None:
        terminator, self._terminator = self._terminator, None
        broker, self.broker = self.broker, None
        try:
            if terminator is not None:
                terminator.stop()
        finally:
            if broker is not None:
                broker.stop()

    def settings_for(self, settings: Settings, client: str | None = DEFAULT_CLIENT) -> Settings:
        """``settings`` pointed at the TLS port, as ``client`` (None: TLS with no certificate)."""
        pair = self.client(client) if client is not None else None
        tls = settings.replace(
            kafka_bootstrap_servers=self.bootstrap_servers,
            kafka_security_protocol="SSL",
            kafka_ssl_cafile=self.files.ca_file,
            kafka_ssl_certfile=pair.cert_file if pair else None,
            kafka_ssl_keyfile=pair.key_file if pair else None,
        )
        check_kafka_security(tls)
        return tls

    def __enter__(self) -> EmbeddedTlsBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
