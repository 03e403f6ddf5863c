"""The throwaway CA of the TLS demo and tests, and the stunnel configuration in front of Tansu."""

from __future__ import annotations

import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from engine.kafka.certificates import make_tls_files
from engine.kafka.terminator import TerminatorConfig


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_server_and_client_certificates_chain_to_the_ca(tmp_path: Path) -> None:
    files = make_tls_files(tmp_path, server_hosts=("127.0.0.1", "localhost"), clients=("bank-007",))
    ca = load(files.ca_file)
    for path in (files.server.cert_file, files.clients["bank-007"].cert_file):
        cert = load(path)
        cert.verify_directly_issued_by(ca)
    client = load(files.clients["bank-007"].cert_file)
    (cn,) = client.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert cn.value == "bank-007"  # the principal a broker sees under mutual TLS
    usage = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    names = load(files.server.cert_file).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert names.value.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in names.value.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


def test_private_keys_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    files = make_tls_files(tmp_path, clients=("sakk",))
    for key in (tmp_path / "ca.key", files.server.key_file, files.clients["sakk"].key_file):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key


def test_python_tls_loads_each_pair(tmp_path: Path) -> None:
    files = make_tls_files(tmp_path, clients=("sakk",))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=str(files.ca_file))
    context.load_cert_chain(
        str(files.clients["sakk"].cert_file), str(files.clients["sakk"].key_file)
    )


def test_making_them_again_replaces_every_file(tmp_path: Path) -> None:
    first = make_tls_files(tmp_path, clients=("sakk",)).ca_file.read_bytes()
    assert make_tls_files(tmp_path, clients=("sakk",)).ca_file.read_bytes() != first


@pytest.mark.parametrize("clients", [("ca",), ("server",), ("a", "a"), ("../x",)])
def test_client_names_that_would_clash_are_refused(tmp_path: Path, clients: tuple[str]) -> None:
    with pytest.raises(ValueError):
        make_tls_files(tmp_path, clients=clients)


def config(require_client_cert: bool) -> TerminatorConfig:
    return TerminatorConfig(
        "127.0.0.1", 9093, "127.0.0.1", 9092, Path("s.crt"), Path("s.key"), Path("ca.crt"),
        require_client_cert,
    )  # fmt: skip


def test_terminator_requires_a_client_certificate_signed_by_the_ca() -> None:
    lines = config(True).render(Path("stunnel.log")).splitlines()
    for line in (
        "accept = 127.0.0.1:9093",
        "connect = 127.0.0.1:9092",
        "CAfile = ca.crt",
        "verifyChain = yes",
        "requireCert = yes",
        "sslVersionMin = TLSv1.2",
        "foreground = yes",
    ):
        assert line in lines, line


def test_terminator_without_mutual_tls_still_serves_tls_only() -> None:
    text = config(False).render(Path("stunnel.log"))
    assert "requireCert" not in text and "cert = s.crt" in text
