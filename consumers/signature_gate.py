"""The validator's gate: a bank's signature is checked before anything else is read.

A message that fails is dead-lettered with its security reason and nothing else of it
is recorded: above all not its bank reference, or a forger could burn a real bank's
reference and get the genuine payment refused as a duplicate.

Once the signer is known to be the bank the event acts for, and the message key the
one its event type declares (a bank does not choose the partition), the ids the bank
supplied are put in its namespace (:meth:`SignatureScreen.switch_ids`): every stage
after the gate sees only the switch's ids.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from engine.events import EVENTS, PAYMENT_INITIATED
from engine.ids import MalformedIdError
from engine.ledger.database import read_only
from engine.ledger.keys import read_key_ring
from engine.pipeline.messages import RawMessage
from engine.trust.signing import KeyRing, Refusal, Verdict, judged_at

UNKNOWN_SIGNER = "unknown"  # metric label of a claimed signer that is no known bank


class SignatureGate:
    """Reads the banks' keys once per batch and checks every message with them.

    ``at_receipt``: judge a key's validity when the switch received the message (the
    live validator, on a broker without LogAppendTime). A replay passes False and
    judges at the record's own time, the only one it has.
    """

    def __init__(
        self, at_receipt: bool = True, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.at_receipt = at_receipt
        self._clock = clock

    def screen(self, engine: Engine) -> SignatureScreen:
        with read_only(engine).connect() as conn:
            ring = read_key_ring(conn)
        return SignatureScreen(ring, self._clock() if self.at_receipt else None)


class SignatureScreen:
    def __init__(self, ring: KeyRing, received_at: datetime | None) -> None:
        self.ring = ring
        self.received_at = received_at

    def check_raw(self, message: RawMessage) -> Verdict:
        """Signature, key and its validity window, over topic, key and value."""
        record_time = datetime.fromtimestamp(message.timestamp_ms / 1000, tz=UTC)
        received = self.received_at or record_time
        at = judged_at(message.timestamp_ms, message.timestamp_type, received)
        verdict = self.ring.verify(
            message.topic, message.key, message.value or b"", message.headers, at
        )
        return dataclasses.replace(verdict, claimed_signer=self._label(verdict.claimed_signer))

    def check_record(
        self, verdict: Verdict, message: RawMessage, event_type: str, record: dict[str, Any]
    ) -> Verdict:
        """The signer must be the bank that acts: the payer's for a payment, the sender's
        for a step (engine.events declares which field names it). No bank acts for another.
        And the message key must be the one the event type declares (the payer account):
        a bank does not choose which partition, hence which payer's queue, it lands on.
        """
        evidence = verdict.evidence
        if evidence is None:
            return verdict
        declared = EVENTS.get(event_type, PAYMENT_INITIATED)
        field, acting = declared.signer_field, declared.acting_bank(record)
        if acting != evidence.signer:
            refusal = (
                Refusal.SIGNER_NOT_PAYER_BANK
                if field == "payer_bank"
                else Refusal.SIGNER_NOT_SENDER
            )
            return Verdict(
                None,
                refusal,
                f"signed by bank {evidence.signer}, {field} is {str(acting)[:8]}",
                verdict.claimed_signer,
            )
        if message.key != declared.key(record):
            return Verdict(
                None,
                Refusal.KEY_NOT_DECLARED,
                f"the message key is not the {declared.key_field} the {event_type} names",
                verdict.claimed_signer,
            )
        return verdict

    def switch_ids(
        self, verdict: Verdict, event_type: str, record: dict[str, Any]
    ) -> dict[str, Any] | MalformedIdError:
        """``record`` with the ids its signer supplied in the signer's namespace, or, for
        an id the switch cannot take, the :class:`MalformedIdError` saying why.

        Called on a record :meth:`check_record` passed: the signer is the acting bank.
        """
        declared = EVENTS.get(event_type, PAYMENT_INITIATED)
        bank = verdict.evidence.signer if verdict.evidence else declared.acting_bank(record)
        try:
            return declared.with_switch_ids(record, str(bank))
        except MalformedIdError as exc:
            return exc

    def _label(self, claimed: str) -> str:
        """A bounded metric label: a forger chooses the header, not the label's cardinality."""
        if not claimed:
            return ""
        return claimed if claimed in self.ring.banks else UNKNOWN_SIGNER
