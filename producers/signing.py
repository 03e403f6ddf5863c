"""The bank side of signed events: whose key signs which message.

A bank signs every event it publishes with its own private key
(``SAKK_SIGNING_KEY_FILE``); the simulator, the demo, the benchmark and the chaos
harness play many banks and hold one key for each (:func:`simulated_signers`), and
register the public halves with the switch as a bank's operator would.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine

from engine.ledger.keys import KeyEntry, register_keys
from engine.trust.exceptions import KeyFileError
from engine.trust.keys import KEY_ID_HEX_CHARS, KeyPair, encode_public
from engine.trust.signing import BANK_CODE_MAX_CHARS, EventSigner

Headers = tuple[tuple[str, bytes], ...]
# From when the simulated banks' keys are valid: long before any simulated payment, so a
# replay of an old run still finds them valid at its records' times.
SIMULATED_KEYS_VALID_FROM = datetime(2020, 1, 1, tzinfo=UTC)


# The name ``sakk keys generate BANK`` gives a private key file: BANK-KEYID.key.
KEY_FILE_NAME = re.compile(
    rf"^(?P<bank>[A-Za-z0-9]{{1,{BANK_CODE_MAX_CHARS}}})-(?P<key_id>[0-9a-f]{{{KEY_ID_HEX_CHARS}}})\.key$"
)


def own_signer(path: Path, bank: str | None = None) -> EventSigner:
    """The one bank a key file signs for, and its key.

    The file's name says whose key it is when ``sakk keys generate`` wrote it
    (BANK-KEYID.key): the key id in the name must be the key's, and ``bank``, if given,
    that bank. A file named otherwise needs ``bank``. Raises KeyFileError.
    """
    pair = KeyPair.read(path)
    named = KEY_FILE_NAME.match(path.name)
    if named is not None:
        if named["key_id"] != pair.key_id:
            raise KeyFileError(
                f"{path.name}: the name says key {named['key_id']}, the file holds key "
                f"{pair.key_id}"
            )
        if bank and bank != named["bank"]:
            raise KeyFileError(f"{path.name} is bank {named['bank']}'s key, not bank {bank}'s")
        return EventSigner(named["bank"], pair)
    if not bank:
        raise KeyFileError(
            f"{path.name}: cannot tell whose key this is: keep the name sakk keys generate "
            f"gave it (BANK-KEYID.key) or give the bank (--bank CODE, SAKK_SIGNING_BANK)"
        )
    if not (len(bank) <= BANK_CODE_MAX_CHARS and bank.isascii() and bank.isalnum()):
        raise KeyFileError(f"bank {bank[:16]!r} is not a bank code (1 to 8 letters or digits)")
    return EventSigner(bank, pair)


class Signers:
    """One signing key per bank; signs a message as the bank named for it."""

    def __init__(self, signers: Iterable[EventSigner]) -> None:
        self._by_bank = {s.bank: s for s in signers}

    @classmethod
    def from_key_file(cls, bank: str, path: Path) -> Signers:
        return cls([EventSigner(bank, KeyPair.read(path))])

    @property
    def banks(self) -> frozenset[str]:
        return frozenset(self._by_bank)

    def __contains__(self, bank: object) -> bool:
        return bank in self._by_bank

    def get(self, bank: str) -> EventSigner:
        try:
            return self._by_bank[bank]
        except KeyError:
            raise KeyFileError(
                f"no signing key for bank {bank}: a bank signs only its own payments"
            ) from None

    def headers(self, bank: str, topic: str, key: bytes | None, value: bytes) -> Headers:
        return self.get(bank).headers(topic, key, value)

    def key_entries(self, valid_from: datetime) -> list[KeyEntry]:
        """The public halves, as the switch's reference data registers them."""
        return [
            KeyEntry(s.bank, s.key_id, encode_public(s.key.public), valid_from)
            for s in self._by_bank.values()
        ]


def simulated_signers(banks: Iterable[str], seed: str) -> Signers:
    """A reproducible key per simulated bank (demo, simulator, benchmark, chaos, tests)."""
    return Signers(
        EventSigner(bank, KeyPair.from_seed(f"sakk-simulated/{seed}/{bank}".encode()))
        for bank in sorted(set(banks))
    )


def register_signers(engine: Engine, signers: Signers, valid_from: datetime) -> int:
    """Give the switch the simulated banks' public keys (new ones only); returns how many."""
    with engine.begin() as conn:
        return register_keys(conn, signers.key_entries(valid_from))


def bank_codes(reference: Mapping[str, object]) -> list[str]:
    """The bank codes of a reference file's ``banks``."""
    banks = reference.get("banks", [])
    return [str(b["code"]) for b in banks] if isinstance(banks, list) else []
