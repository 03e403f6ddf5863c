"""The payment event types, each declared once: its schema file, its topic, its key.

Every stage, the publisher, the dead-letter tools and the chaos harness read the
topic and the message key of an event from here; nothing else spells them. At
start-up :func:`check_against_schemas` proves the declarations and ``schemas/*.avsc``
agree (each file names its record, each key field is a string field, each enum that
spells a step kind, a notified outcome or a delivery status holds exactly the catalog's
symbols: :data:`CATALOG_ENUMS`), so a schema and its declaration cannot drift apart
unnoticed.

Fields a stage passes on from the event it handles are read from the schemas too
(:func:`carried_fields`): the settled event carries what the validated event and the
settled schema have in common, and no stage retypes that list.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

from engine.config import Settings
from engine.domain.notifications import FINISHED, NOTIFIED_OUTCOMES
from engine.domain.steps import REQUESTED_STEPS, STEPS
from engine.ids import MalformedIdError, qualify_named, qualify_own

EVENT_NAMESPACE = uuid.UUID("5a4b0c1e-7d1f-4c2e-9a55-5a4b4b000001")
SWITCH = "SAKK"  # the sender of the events the switch makes itself (a hold's expiry)


def uuid5_text(namespace: uuid.UUID, name: str) -> str:
    """``str(uuid.uuid5(namespace, name))``, the same text without building a UUID object.

    The stages derive two or three ids per payment; the UUID object costs more than the
    SHA-1 itself.
    """
    digest = bytearray(hashlib.sha1(namespace.bytes + name.encode("utf-8")).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def derived_event_id(source_event_id: str, event_type: str, extra: str = "") -> str:
    """Deterministic id of an event derived from another: a replay produces the same ids."""
    return uuid5_text(EVENT_NAMESPACE, f"{source_event_id}/{event_type}/{extra}")


class EventDeclarationError(RuntimeError):
    """A declared event type and its schema file disagree."""


@dataclass(frozen=True, slots=True)
class EventType:
    """One payment event: the record its schema file defines, the topic it travels on."""

    name: str  # the Avro record name, e.g. PaymentSettled
    schema_file: str
    topic_name: str  # the short topic name: ``Settings.topic`` adds the prefix
    key_field: str = "payer_account"  # one payer's events keep their order on every topic
    signer_field: str = "payer_bank"  # the bank that must have signed it, if a bank sends it
    # Ids a bank supplies, kept in the namespace of the bank that signed (engine.ids):
    own_ids: tuple[str, ...] = ()  # the bank's own (an event's, a payment's)
    named_ids: tuple[str, ...] = ()  # naming what the switch told it of (a step's payment)

    def topic(self, settings: Settings) -> str:
        return settings.topic(self.topic_name)

    def key(self, record: Mapping[str, Any]) -> bytes:
        """The message key of ``record``: the same partition, stage after stage."""
        return str(record[self.key_field]).encode("utf-8")

    def acting_bank(self, record: Mapping[str, Any]) -> Any:
        """The bank ``record`` acts for (and must be signed by): payer's or step's sender."""
        return record.get(self.signer_field)

    def as_switch_knows(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """``record`` as a bank sent it, with its ids as the gate made them (for tools that
        read a bank's topic and compare with the ledger); as it is if an id is malformed."""
        try:
            return self.with_switch_ids(record, str(self.acting_bank(record)))
        except MalformedIdError:
            return dict(record)

    def with_switch_ids(self, record: Mapping[str, Any], bank: str) -> dict[str, Any]:
        """``record`` with the ids ``bank`` supplied in its namespace.

        Raises :class:`~engine.ids.MalformedIdError` for an id the switch cannot take.
        """
        out = dict(record)
        for name in self.own_ids:
            out[name] = qualify_own(name, bank, record[name])
        for name in self.named_ids:
            out[name] = qualify_named(name, bank, record[name])
        return out


PAYMENT_INITIATED = EventType(
    "PaymentInitiated", "payment_initiated.avsc", "initiated", own_ids=("event_id", "payment_id")
)
PAYMENT_VALIDATED = EventType("PaymentValidated", "payment_validated.avsc", "validated")
PAYMENT_REJECTED = EventType("PaymentRejected", "payment_rejected.avsc", "rejected")
PAYMENT_SETTLED = EventType("PaymentSettled", "payment_settled.avsc", "settled")
PAYMENT_FAILED = EventType("PaymentFailed", "payment_failed.avsc", "failed")
PAYMENT_NOTIFIED = EventType("PaymentNotified", "payment_notified.avsc", "notified")
# The lifecycle of a payment after its first answer: steps a bank asks for travel with
# the payments themselves (payments.initiated, then payments.validated), keyed by the
# payment's payer account, so each step reaches settlement after the payment it names.
PAYMENT_STEP_REQUESTED = EventType(
    "PaymentStepRequested",
    "payment_step_requested.avsc",
    "initiated",
    signer_field="sender_bank",
    own_ids=("event_id",),  # the step's id is its request's event id
    named_ids=("payment_id",),  # the payer's bank's own id, or the switch's it was told
)
PAYMENT_STEP_VALIDATED = EventType(
    "PaymentStepValidated", "payment_step_validated.avsc", "validated"
)
PAYMENT_STEP_COMPLETED = EventType("PaymentStepCompleted", "payment_step_completed.avsc", "steps")
PAYMENT_STEP_REFUSED = EventType("PaymentStepRefused", "payment_step_refused.avsc", "steps-refused")
# A bank's liquidity at the switch, funded and withdrawn by the switch's operators (never
# signed by a bank), keyed by bank: one bank's movements stay in order. Settlement posts
# them (engine.ledger.positions), so replay reproduces every bank's liquidity.
FUNDS_IN = EventType(
    "FundsIn", "liquidity_funds_in.avsc", "liquidity.movements",
    key_field="bank_code", signer_field="bank_code",
)  # fmt: skip
FUNDS_OUT = EventType(
    "FundsOut", "liquidity_funds_out.avsc", "liquidity.movements",
    key_field="bank_code", signer_field="bank_code",
)  # fmt: skip
LIQUIDITY_EVENTS = (FUNDS_IN, FUNDS_OUT)

EVENTS: Mapping[str, EventType] = MappingProxyType(
    {
        e.name: e
        for e in (
            PAYMENT_INITIATED,
            PAYMENT_VALIDATED,
            PAYMENT_REJECTED,
            PAYMENT_SETTLED,
            PAYMENT_FAILED,
            PAYMENT_NOTIFIED,
            PAYMENT_STEP_REQUESTED,
            PAYMENT_STEP_VALIDATED,
            PAYMENT_STEP_COMPLETED,
            PAYMENT_STEP_REFUSED,
            FUNDS_IN,
            FUNDS_OUT,
        )
    }
)
# The first type declared on each topic; payments.initiated and payments.validated also
# carry the steps of payments (ON_TOPIC lists every type a topic carries).
BY_TOPIC: Mapping[str, EventType] = MappingProxyType(
    {t: next(e for e in EVENTS.values() if e.topic_name == t)
     for t in dict.fromkeys(e.topic_name for e in EVENTS.values())}
)  # fmt: skip
ON_TOPIC: Mapping[str, tuple[EventType, ...]] = MappingProxyType(
    {t: tuple(e for e in EVENTS.values() if e.topic_name == t) for t in BY_TOPIC}
)
TOPIC_NAMES = tuple(BY_TOPIC)  # every topic an event travels on, in declaration order
# The switch's own events, not a payment's: each travels on its topic beside the pipeline,
# produced and read by the commands and auditors that own it, never by a stage.
SETTLEMENT_WINDOW_CHANGED = EventType(
    "SettlementWindowChanged",
    "settlement_window_changed.avsc",
    "settlement.windows",
    key_field="window",  # one window's transitions keep their order
    signer_field="actor",
)
SWITCH_EVENTS: Mapping[str, EventType] = MappingProxyType(
    {SETTLEMENT_WINDOW_CHANGED.name: SETTLEMENT_WINDOW_CHANGED}
)
OUTCOME_EVENTS = (
    PAYMENT_SETTLED, PAYMENT_REJECTED, PAYMENT_FAILED, PAYMENT_STEP_COMPLETED,
    PAYMENT_STEP_REFUSED,
)  # what banks are told  # fmt: skip
EMITTED_BY_STAGES = (PAYMENT_VALIDATED, *OUTCOME_EVENTS, PAYMENT_NOTIFIED)
# The Avro enums that spell a catalog (engine.domain): (event, field) -> the symbols the
# enum must hold, no more, no fewer. Any other enum naming a step kind is refused too.
_STEP_NAMES = frozenset(k.value for k in STEPS)
_ASKED = frozenset(k.value for k in REQUESTED_STEPS)
CATALOG_ENUMS: Mapping[tuple[str, str], frozenset[str]] = MappingProxyType(
    {
        (PAYMENT_STEP_REQUESTED.name, "step"): _ASKED,
        (PAYMENT_STEP_VALIDATED.name, "step"): _ASKED,
        (PAYMENT_STEP_COMPLETED.name, "step"): _STEP_NAMES,
        (PAYMENT_STEP_REFUSED.name, "step"): _ASKED,
        (PAYMENT_NOTIFIED.name, "outcome"): frozenset(NOTIFIED_OUTCOMES),
        (PAYMENT_NOTIFIED.name, "delivery_status"): frozenset(s.value for s in FINISHED),
    }
)


@cache
def _schema_fields(schemas_dir: Path, schema_file: str) -> tuple[tuple[str, Any], ...]:
    schema = json.loads((schemas_dir / schema_file).read_text(encoding="utf-8"))
    return tuple((f["name"], f["type"]) for f in schema["fields"])


def field_names(event: EventType, schemas_dir: Path | None = None) -> tuple[str, ...]:
    """The fields of ``event``'s current schema, in schema order."""
    return tuple(
        n for n, _ in _schema_fields(schemas_dir or Settings().schemas_dir, event.schema_file)
    )


@cache
def carried_fields(source: EventType, target: EventType) -> tuple[str, ...]:
    """Fields ``target`` takes over unchanged from ``source``: those both schemas define.

    ``event_id`` and ``causation_event_id`` are the target's own and never carried.
    """
    own = {"event_id", "causation_event_id"}
    have = set(field_names(source))
    return tuple(f for f in field_names(target) if f in have and f not in own)


def _enum_symbols(avro_type: Any) -> list[str] | None:
    """The symbols of the enum ``avro_type`` is (or, in a union, holds); None for none."""
    if isinstance(avro_type, list):
        found = [_enum_symbols(t) for t in avro_type]
        return next((f for f in found if f is not None), None)
    if isinstance(avro_type, dict) and avro_type.get("type") == "enum":
        return [str(s) for s in avro_type.get("symbols", [])]
    return None


def catalog_enum_problems(event_name: str, types: Mapping[str, Any]) -> list[str]:
    """How the enums of one schema (field -> Avro type) disagree with the catalog."""
    problems: list[str] = []
    for event, field in CATALOG_ENUMS:
        if event == event_name and _enum_symbols(types.get(field)) is None:
            problems.append(f"{event}: field {field!r} is no enum, the catalog expects one")
    for field, avro_type in types.items():
        symbols = _enum_symbols(avro_type)
        if symbols is None:
            continue
        wanted = CATALOG_ENUMS.get((event_name, field))
        if wanted is None:
            if _STEP_NAMES & set(symbols):
                problems.append(
                    f"{event_name}: enum field {field!r} names step kinds, but engine.events "
                    "does not check it against the step catalog (CATALOG_ENUMS)"
                )
            continue
        missing, extra = sorted(wanted - set(symbols)), sorted(set(symbols) - wanted)
        if missing or extra:
            problems.append(
                f"{event_name}: enum field {field!r} disagrees with the catalog "
                f"(engine.domain): missing {missing or 'none'}, unknown {extra or 'none'}"
            )
    return problems


def check_against_schemas(schemas_dir: Path) -> None:
    """Raise :class:`EventDeclarationError` unless every declaration matches its schema file."""
    problems: list[str] = []
    declared = {e.schema_file for e in EVENTS.values()}
    for event in EVENTS.values():
        path = schemas_dir / event.schema_file
        try:
            schema = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            problems.append(f"{event.name}: cannot read {path}: {exc}")
            continue
        if schema.get("name") != event.name:
            problems.append(f"{event.name}: {path.name} defines record {schema.get('name')!r}")
        types = {f["name"]: f["type"] for f in schema.get("fields", [])}
        if types.get(event.key_field) != "string":
            problems.append(f"{event.name}: key field {event.key_field!r} is not a string field")
        if event.topic_name == "initiated" and types.get(event.signer_field) != "string":
            problems.append(f"{event.name}: signer field {event.signer_field!r} is not a string")
        if "event_id" not in types or "payment_id" not in types:
            problems.append(f"{event.name}: an event must carry event_id and payment_id")
        for name in (*event.own_ids, *event.named_ids):
            if types.get(name) != "string":
                problems.append(f"{event.name}: id field {name!r} is not a string field")
        problems += catalog_enum_problems(event.name, types)
    problems += _switch_event_problems(schemas_dir)
    undeclared = sorted(
        p.name
        for pattern in ("payment_*.avsc", "liquidity_*.avsc")
        for p in schemas_dir.glob(pattern)
        if p.name not in declared
    )
    if undeclared:
        problems.append(f"schemas without a declared event type: {', '.join(undeclared)}")
    if problems:
        raise EventDeclarationError("; ".join(problems))


def _switch_event_problems(schemas_dir: Path) -> list[str]:
    """How the switch's own events disagree with their schema files (name, key field)."""
    problems: list[str] = []
    for event in SWITCH_EVENTS.values():
        try:
            schema = json.loads((schemas_dir / event.schema_file).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            problems.append(f"{event.name}: cannot read {event.schema_file}: {exc}")
            continue
        types = {f["name"]: f["type"] for f in schema.get("fields", [])}
        if schema.get("name") != event.name:
            problems.append(f"{event.name}: {event.schema_file} defines {schema.get('name')!r}")
        if types.get(event.key_field) != "string" or types.get("event_id") != "string":
            problems.append(f"{event.name}: event_id and {event.key_field!r} must be strings")
    return problems
