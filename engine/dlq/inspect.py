"""One dead letter made readable: where it came from, why, and its body when it decodes.

What is shown is masked (``engine.masking``): account numbers to their last 4 digits,
holders' names hidden, in the body, the key and the reason alike. The body is decoded
with the codec the caller gives: with the ledger's approved schemas, a dead letter of
a schema approved since decodes now.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from engine.ledger.dead_letters import DeadLetterRecord, StoredCopy, get_dead_letter, stored_copy
from engine.masking import mask_key, mask_record, mask_text
from engine.pipeline.dead_letters import DLQ_HEADROOM_BYTES
from engine.serialization import AvroCodec, DecodeError


@dataclass(frozen=True, slots=True)
class DeadLetterView:
    """A dead letter fit to print; ``body`` is None when it does not decode (``decode_error``)."""

    record: DeadLetterRecord
    key: str
    stored_bytes: int | None  # None: no stored copy
    cut: bool
    event_type: str | None
    body: dict[str, Any] | None
    decode_error: str | None

    @property
    def reason(self) -> str:
        return mask_text(self.record.reason)


def dead_letter_copy_limit_bytes(max_message_bytes: int) -> int:
    """The most a dead letter's stored copy holds: longer originals were cut to this."""
    return max_message_bytes - DLQ_HEADROOM_BYTES


def is_cut(copy: StoredCopy, max_message_bytes: int) -> bool:
    """True when the copy may be a cut original: it is as long as a copy can be.

    The ledger does not record the cut (the dead-letter topic's header does); a copy
    reaching the limit is treated as cut, since an original exactly that long is rare
    and sending a cut message would only dead-letter it again.
    """
    return len(copy.value) >= dead_letter_copy_limit_bytes(max_message_bytes)


def inspect_dead_letter(
    conn: Connection, codec: AvroCodec, dead_letter_id: int, max_message_bytes: int
) -> DeadLetterView:
    record = get_dead_letter(conn, dead_letter_id)
    copy = stored_copy(conn, record)
    if copy is None:
        return DeadLetterView(record, "", None, False, None, None, "no stored copy in the ledger")
    cut = is_cut(copy, max_message_bytes)
    try:
        event = codec.decode(copy.value)
    except DecodeError as exc:
        error = f"{exc.kind}: {mask_text(str(exc))}"
        return DeadLetterView(record, mask_key(copy.key), len(copy.value), cut, None, None, error)
    return DeadLetterView(
        record,
        mask_key(copy.key),
        len(copy.value),
        cut,
        event.event_type,
        mask_record(event.record),
        None,
    )
