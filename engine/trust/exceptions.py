"""Errors of the trust layer, named for what happened."""

from __future__ import annotations


class TrustError(Exception):
    """Base of the trust layer's errors."""


class KeyFileError(TrustError):
    """A key file that cannot be used: missing, unreadable, too open, or not an Ed25519 key."""


class KeyRegistryError(TrustError):
    """A key entry of the reference data that cannot be registered or changed."""
