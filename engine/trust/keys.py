"""Ed25519 key pairs: the banks' (they sign their events) and the switch's (it signs webhooks).

A private key lives in a PKCS#8 PEM file readable by its owner only; the switch never
holds a bank's. A public key travels as the base64 of its 32 raw bytes, and its key id
is derived from it (``fingerprint``), so an id can never name two different keys.
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from engine.trust.exceptions import KeyFileError

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
KEY_ID_HEX_CHARS = 16
PRIVATE_KEY_MODE = 0o600
KEY_FILE_MAX_BYTES = 16 * 1024


def fingerprint(public: Ed25519PublicKey) -> str:
    """The key id: the first 16 hex digits of SHA-256 over the raw public key."""
    return hashlib.sha256(public_bytes(public)).hexdigest()[:KEY_ID_HEX_CHARS]


def public_bytes(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def encode_public(public: Ed25519PublicKey) -> str:
    return base64.b64encode(public_bytes(public)).decode("ascii")


def decode_public(text: str) -> Ed25519PublicKey:
    """A public key from the base64 of its 32 raw bytes; ValueError when it is not one."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError) as exc:
        raise ValueError("public key is not base64") from exc
    if len(raw) != PUBLIC_KEY_BYTES:
        raise ValueError(f"public key has {len(raw)} bytes, expected {PUBLIC_KEY_BYTES}")
    return Ed25519PublicKey.from_public_bytes(raw)


def verifies(public: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        public.verify(signature, message)
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True)
class KeyPair:
    """A private key and the id of its public half."""

    private: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> KeyPair:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> KeyPair:
        """A reproducible key for simulations and tests, never for a real bank."""
        return cls(Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed).digest()))

    @property
    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()

    @property
    def key_id(self) -> str:
        return fingerprint(self.public)

    def sign(self, message: bytes) -> bytes:
        return self.private.sign(message)

    def write(self, path: Path) -> None:
        """Write the private key as PEM, created readable and writable by its owner only."""
        pem = self.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_KEY_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)

    @classmethod
    def read(cls, path: Path) -> KeyPair:
        """Read a private key file; refuse one that others may read."""
        try:
            mode = path.stat().st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise KeyFileError(
                    f"{path}: private key readable by others (mode {stat.S_IMODE(mode):o}); "
                    f"chmod 600 it"
                )
            data = path.read_bytes()[: KEY_FILE_MAX_BYTES + 1]
        except OSError as exc:
            raise KeyFileError(f"{path}: {exc.strerror}") from exc
        if len(data) > KEY_FILE_MAX_BYTES:
            raise KeyFileError(f"{path}: larger than {KEY_FILE_MAX_BYTES} bytes, not a key")
        try:
            private = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise KeyFileError(f"{path}: not an unencrypted PEM private key") from exc
        if not isinstance(private, Ed25519PrivateKey):
            raise KeyFileError(f"{path}: not an Ed25519 key")
        return cls(private)
