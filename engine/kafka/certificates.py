"""A throwaway certificate authority with server and client certificates, as PEM files.

For ``sakk demo --tls`` and the TLS tests only: the CA key is written beside the
certificates and every certificate lives a few days. Production certificates come from
the operator's CA (``deploy/tls/make-certs.sh`` and docs/operations.md).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = dt.timedelta(days=7)
CLOCK_SKEW = dt.timedelta(minutes=5)  # valid from a little before now: peers' clocks differ
MAX_CLIENTS = 64
PRIVATE_FILE_MODE = 0o600


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, as PEM files."""

    cert_file: Path
    key_file: Path


@dataclass(frozen=True)
class TlsFiles:
    """What ``make_tls_files`` wrote: the CA, one server pair, one pair per client name."""

    ca_file: Path
    server: KeyPair
    clients: dict[str, KeyPair]


@dataclass(frozen=True)
class _Issuer:
    name: x509.Name
    key: ec.EllipticCurvePrivateKey


def make_tls_files(
    directory: Path,
    server_hosts: Sequence[str] = ("localhost", "127.0.0.1"),
    clients: Sequence[str] = ("sakk",),
    now: dt.datetime | None = None,
) -> TlsFiles:
    """Write a fresh CA, a server certificate for ``server_hosts`` and client certificates.

    Each client certificate's subject is ``CN=<name>``: the principal a broker sees under
    mutual TLS. Private keys are unencrypted and readable by their owner only.
    """
    if not server_hosts:
        raise ValueError("a server certificate needs at least one host name or address")
    if len(clients) > MAX_CLIENTS:
        raise ValueError(f"{len(clients)} clients: at most {MAX_CLIENTS}")
    if {"ca", "server"} & set(clients) or len(set(clients)) != len(clients):
        raise ValueError(f"client names {list(clients)}: unique, and neither 'ca' nor 'server'")
    now = now or dt.datetime.now(dt.UTC)
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Sakk throwaway CA")])
    ca_cert = _ca_certificate(ca_name, ca_key, now)
    ca_file = directory / "ca.crt"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    _write_private(directory / "ca.key", ca_key)
    issuer = _Issuer(ca_name, ca_key)
    server = _issue(directory, "server", issuer, now, server_hosts, ExtendedKeyUsageOID.SERVER_AUTH)
    issued = {
        name: _issue(directory, name, issuer, now, (), ExtendedKeyUsageOID.CLIENT_AUTH)
        for name in clients
    }
    return TlsFiles(ca_file, server, issued)


def _ca_certificate(
    name: x509.Name, key: ec.EllipticCurvePrivateKey, now: dt.datetime
) -> x509.Certificate:
    return (
        _builder(name, name, key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )


def _issue(
    directory: Path,
    name: str,
    issuer: _Issuer,
    now: dt.datetime,
    hosts: Sequence[str],
    usage: x509.ObjectIdentifier,
) -> KeyPair:
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"certificate name {name!r} is not a plain file name")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        _builder(subject, issuer.name, key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if hosts:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_general_name(h) for h in hosts]), critical=False
        )
    cert = builder.sign(issuer.key, hashes.SHA256())
    pair = KeyPair(directory / f"{name}.crt", directory / f"{name}.key")
    pair.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_private(pair.key_file, key)
    return pair


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey, now: dt.datetime
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + VALIDITY)
    )


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _write_private(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """Write ``key`` unencrypted (PKCS#8 PEM), created owner-only: never readable by others."""
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
