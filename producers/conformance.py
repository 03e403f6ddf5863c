"""A bank's messages checked as the switch would judge them, without the switch.

``sakk conformance FILE`` reads what a bank sends, in one of three forms, and reports
EVERY problem of every message (not the first one only), each with the message's
position, against what the bank has: the approved schemas (a directory of ``.avsc``,
the release's by default), the signing rules, and a reference file (banks, their keys,
accounts and channel limits, as ``tests/fixtures/reference.json``). No broker, no ledger.

- **capture** (``sakk publish --capture``; ``producers.capture``): the Kafka messages
  exactly as sent. Every check below runs.
- **JSON Lines** (the ``sakk publish`` format): the content checks; there is no
  signature or key yet (capture them to check those).
- **ISO 20022 XML** (pacs.008 / pain.001): read by ``engine.iso``'s own reader (its
  validation problems are reported as they are), then the content checks of each
  transaction as the payment it becomes.

The checks, each a small pure function returning the problems it found:

| check | what must hold |
| --- | --- |
| ``topic`` | a bank publishes on payments.initiated only |
| ``schema`` | single-object Avro under an approved schema (fingerprint), of an event a bank sends |
| ``key`` | the Kafka key is the event's declared key (the payer account) |
| ``signature`` | headers well formed; verifies with a signer's key valid at the event's time |
| ``signer`` | the signer is the acting bank (a payment's payer bank, a step's sender bank) |
| ``ids`` | own ids 1-64 characters without ':'; a step's payment_id may be the switch's BANK:ID |
| ``reference`` | bank_reference 1-35 characters (ISO 20022 Max35Text) |
| ``amount`` | integer minor units, above zero, within the channel's limit and the maximum |
| ``currency`` | a known ISO 4217 code, accepted on the payment's channel |
| ``banks`` | banks of the reference data |
| ``accounts`` | known at their bank, as far as the reference lists that bank's accounts |
| ``time`` | an event time with its zone |
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.events import PAYMENT_INITIATED, PAYMENT_STEP_REQUESTED, EventType
from engine.ids import (
    MAX_ACCOUNT_CHARS,
    MAX_REFERENCE_CHARS,
    MalformedIdError,
    qualify_named,
    qualify_own,
)
from engine.ledger.models import AccountKind, AccountStatus
from engine.ledger.reference import funding_account, internal_account
from engine.masking import mask_account
from engine.money import MAX_AMOUNT_MINOR, is_known_currency
from engine.serialization import (
    AvroCodec,
    DecodeError,
    SchemaRegistry,
    SchemaValidationError,
    SerializationError,
)
from engine.trust.keys import decode_public
from engine.trust.signing import BankKey, KeyRing
from producers.capture import CapturedMessage, looks_like_capture, parse_captured
from producers.exceptions import InvalidPaymentError
from producers.jsonl import parse_message

ACTIVE = AccountStatus.ACTIVE.value
MAX_REPORTED_PROBLEMS = 10_000  # beyond this, problems are counted but not described
MAX_LINE_BYTES = 4 * 1024 * 1024
DETECT_BYTES = 4096  # read to tell XML from JSON Lines, and a capture from the publish format
BANK_SENDS: Mapping[str, EventType] = {
    e.name: e for e in (PAYMENT_INITIATED, PAYMENT_STEP_REQUESTED)
}
FORMATS = ("auto", "capture", "jsonl", "iso")


class ConformanceInputError(ValueError):
    """The input cannot be checked at all (a usage error): unreadable file, bad reference."""


@dataclass(frozen=True)
class Problem:
    position: str  # "line 3", "transaction 2", "file"
    check: str  # a name of the table above
    detail: str

    def __str__(self) -> str:
        return f"{self.position}: {self.check}: {self.detail}"


@dataclass
class ConformanceReport:
    path: str
    form: str
    messages: int = 0
    failing: int = 0  # messages with at least one problem
    problem_count: int = 0
    problems: list[Problem] = field(default_factory=list)  # the first MAX_REPORTED_PROBLEMS
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    def add(self, problems: Iterable[Problem]) -> None:
        """One message checked, with the problems found in it (none: it conforms)."""
        found = list(problems)
        self.messages += 1
        self.failing += 1 if found else 0
        self.problem_count += len(found)
        room = MAX_REPORTED_PROBLEMS - len(self.problems)
        self.problems.extend(found[: max(room, 0)])

    def lines(self) -> list[str]:
        out = [f"{self.path}: {p}" for p in self.problems]
        if self.problem_count > len(self.problems):
            out.append(f"... and {self.problem_count - len(self.problems)} more problems")
        verdict = "conformant" if self.ok else "NOT conformant"
        out.append(
            f"{self.path}: {self.form}: {self.messages} messages, {self.failing} with problems, "
            f"{self.problem_count} problems: {verdict}"
        )
        out.extend(f"{self.path}: note: {n}" for n in self.notes)
        return out


@dataclass(frozen=True)
class Reference:
    """What the reference file tells a bank: banks, their keys, accounts, channel limits."""

    banks: frozenset[str]
    bics: tuple[tuple[str, str | None], ...]
    accounts: Mapping[str, tuple[str, str, str]]  # number -> (bank, currency, status)
    banks_with_accounts: frozenset[str]
    limits: Mapping[tuple[str, str], int]  # (channel, currency) -> max_amount_minor
    ring: KeyRing

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Reference:
        """Raises ConformanceInputError naming the entry at fault."""
        try:
            banks = list(data.get("banks", []))
            keys = [
                BankKey(
                    str(b["code"]),
                    str(k["key_id"]),
                    decode_public(str(k["public_key"])),
                    _instant(k["valid_from"]),
                    _instant_or_none(k.get("valid_until")),
                    _instant_or_none(k.get("revoked_at")),
                )  # fmt: skip
                for b in banks
                for k in b.get("keys", [])
            ]
            accounts = {
                str(a["number"]): (str(a["bank"]), str(a["currency"]), str(a.get("status", ACTIVE)))
                for a in data.get("accounts", [])
            }
            accounts |= _internal_accounts(
                [str(b["code"]) for b in banks], {c for _, c, _ in accounts.values()} or {"MAD"}
            )
            limits = {
                (str(lim["channel"]), str(lim["currency"])): int(lim["max_amount_minor"])
                for lim in data.get("channel_limits", [])
            }
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConformanceInputError(f"reference data: {type(exc).__name__}: {exc}") from exc
        return cls(
            banks=frozenset(str(b["code"]) for b in banks),
            bics=tuple((str(b["code"]), b.get("bic")) for b in banks),
            accounts=accounts,
            banks_with_accounts=frozenset(bank for bank, _, _ in accounts.values()),
            limits=limits,
            ring=KeyRing(keys),
        )

    @classmethod
    def read(cls, path: Path) -> Reference:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConformanceInputError(f"{path}: {exc}") from exc
        if not isinstance(data, dict):
            raise ConformanceInputError(f"{path}: expected a JSON object at the top")
        return cls.from_json(data)


def _internal_accounts(banks: list[str], currencies: set[str]) -> dict[str, tuple[str, str, str]]:
    """The accounts the switch makes for every bank when it loads reference data (a cash
    withdrawal pays into its bank's CASH account): ``engine.ledger.reference``."""
    kinds = (AccountKind.FEE_INCOME, AccountKind.SETTLEMENT, AccountKind.CASH)
    out = {
        internal_account(bank, kind, currency): (bank, currency, ACTIVE)
        for bank in banks
        for currency in currencies
        for kind in kinds
    }
    out |= {
        funding_account(bank, currency): (bank, currency, ACTIVE)
        for bank in banks
        for currency in currencies
    }
    return out


def _instant(value: object) -> datetime:
    moment = datetime.fromisoformat(str(value))
    if moment.utcoffset() is None:
        raise ValueError(f"{value!r} has no UTC offset")
    return moment.astimezone(UTC)


def _instant_or_none(value: object) -> datetime | None:
    return None if value is None else _instant(value)


# --- the checks: each returns what it found wrong, as (check, detail) -------------------

Found = list[tuple[str, str]]


def check_ids(event: EventType, record: Mapping[str, Any]) -> Found:
    """Own ids 1 to 64 characters without ':'; a step's payment may be named BANK:ID."""
    found: Found = []
    bank = str(event.acting_bank(record))
    checks = [(n, qualify_own) for n in event.own_ids] + [
        (n, qualify_named) for n in event.named_ids
    ]
    for name, qualify in checks:
        try:
            qualify(name, bank, record.get(name, ""))
        except MalformedIdError as exc:
            found.append(("ids", str(exc)))
    return found


def check_reference(record: Mapping[str, Any]) -> Found:
    reference = str(record.get("bank_reference", ""))
    if not 0 < len(reference) <= MAX_REFERENCE_CHARS:
        return [("reference", f"bank_reference must be 1 to {MAX_REFERENCE_CHARS} characters, "
                 f"got {len(reference)}")]  # fmt: skip
    return []


def check_amount(event: EventType, record: Mapping[str, Any], ref: Reference) -> Found:
    """Integer minor units above zero, within the channel's limit (a step's may be null)."""
    amount = record.get("amount_minor")
    if amount is None and event is PAYMENT_STEP_REQUESTED:
        return []
    if isinstance(amount, bool) or not isinstance(amount, int):
        return [("amount", f"amount_minor must be an integer of minor units, got {amount!r:.40}")]
    if amount <= 0:
        return [("amount", f"amount_minor must be above zero, got {amount}")]
    if amount > MAX_AMOUNT_MINOR:
        return [("amount", f"amount_minor {amount} is above the switch's maximum")]
    if event is PAYMENT_INITIATED:
        limit = ref.limits.get((str(record.get("channel")), str(record.get("currency"))))
        if limit is not None and amount > limit:
            return [("amount", f"{amount} is above the {record.get('channel')} limit of {limit}")]
    return []


def check_currency(event: EventType, record: Mapping[str, Any], ref: Reference) -> Found:
    currency = record.get("currency")
    if currency is None and event is PAYMENT_STEP_REQUESTED:
        if record.get("amount_minor") is not None:
            return [("currency", "a step with an amount_minor needs its currency")]
        return []
    if not isinstance(currency, str) or not is_known_currency(currency):
        return [("currency", f"unknown currency {str(currency)[:8]!r} (ISO 4217)")]
    if event is PAYMENT_INITIATED and ref.limits:
        channel = str(record.get("channel"))
        if (channel, currency) not in ref.limits:
            return [("currency", f"{currency} is not accepted on channel {channel}")]
    return []


def check_banks_and_accounts(event: EventType, record: Mapping[str, Any], ref: Reference) -> Found:
    """Banks known; accounts known at their bank when the reference lists that bank's."""
    found: Found = []
    if event is PAYMENT_INITIATED:
        parties = [("payer", record.get("payer_bank"), record.get("payer_account")),
                   ("payee", record.get("payee_bank"), record.get("payee_account"))]  # fmt: skip
    else:
        sender = record.get("sender_bank")
        if sender not in ref.banks:
            found.append(("banks", f"sender_bank {str(sender)[:8]!r} is no bank of the reference"))
        parties = [("payer", None, record.get("payer_account"))]
    for role, bank, account in parties:
        number = str(account or "")
        if not 0 < len(number) <= MAX_ACCOUNT_CHARS:
            found.append(
                ("accounts", f"{role}_account must be 1 to {MAX_ACCOUNT_CHARS} characters")
            )
            continue
        if bank is not None and bank not in ref.banks:
            found.append(("banks", f"{role}_bank {str(bank)[:8]!r} is no bank of the reference"))
            continue
        known = ref.accounts.get(number)
        if known is None:
            if bank is None or bank in ref.banks_with_accounts:
                found.append(("accounts", f"{role}_account {_masked(number)} is not known"
                              + (f" at bank {bank}" if bank else "")))  # fmt: skip
            continue
        if bank is not None and known[0] != bank:
            found.append(("accounts", f"{role}_account {_masked(number)} is at bank {known[0]}, "
                          f"not {bank}"))  # fmt: skip
        elif known[2] != ACTIVE:
            found.append(("accounts", f"{role}_account {_masked(number)} is {known[2]}"))
    return found


def check_time(record: Mapping[str, Any]) -> Found:
    moment = record.get("occurred_at")
    if not isinstance(moment, datetime) or moment.utcoffset() is None:
        return [("time", "occurred_at must be a time with its zone")]
    return []


def check_content(event: EventType, record: Mapping[str, Any], ref: Reference) -> Found:
    """Every check of what a message says (those that need no Kafka message)."""
    return [
        *check_ids(event, record),
        *check_reference(record),
        *check_amount(event, record, ref),
        *check_currency(event, record, ref),
        *check_banks_and_accounts(event, record, ref),
        *check_time(record),
    ]


def check_key(event: EventType, record: Mapping[str, Any], key: bytes | None) -> Found:
    expected = event.key(record)
    if key != expected:
        got = _masked(key.decode("utf-8", "replace")) if key else "none"
        want = _masked(expected.decode())
        return [("key", f"the Kafka key must be the {event.key_field} ({want}), got {got}")]
    return []


def check_signature(
    message: CapturedMessage, acting_bank: object, at: datetime, ref: Reference
) -> Found:
    """Headers well formed, a known key valid at ``at``, and the acting bank as signer."""
    verdict = ref.ring.verify(message.topic, message.key, message.value, message.headers, at)
    found: Found = []
    if not verdict.ok:
        found.append(("signature", f"{verdict.refusal}: {verdict.detail}"))
    if acting_bank is not None and verdict.claimed_signer and verdict.claimed_signer != acting_bank:
        found.append(("signer", f"signed as bank {verdict.claimed_signer[:8]}, but the message "
                      f"acts for bank {str(acting_bank)[:8]}"))  # fmt: skip
    return found


def check_captured(message: CapturedMessage, codec: AvroCodec, ref: Reference, topic: str) -> Found:
    """Every check of one captured Kafka message."""
    found: Found = []
    if message.topic != topic:
        found.append(("topic", f"{message.topic[:60]!r}: a bank publishes on {topic} only"))
    try:
        decoded = codec.decode(message.value)
    except DecodeError as exc:
        found.append(("schema", f"{exc.kind}: {exc}"))
        return found + check_signature(message, None, datetime.now(UTC), ref)
    event = BANK_SENDS.get(decoded.event_type)
    if event is None:
        found.append(("schema", f"{decoded.event_type} is not a message a bank sends"))
        return found
    record = decoded.record
    at = record["occurred_at"]
    return [
        *found,
        *check_key(event, record, message.key),
        *check_signature(message, event.acting_bank(record), at, ref),
        *check_content(event, record, ref),
    ]


# --- the inputs -------------------------------------------------------------------------


def check_file(
    path: Path, ref: Reference, schemas_dir: Path, topic: str, form: str = "auto"
) -> ConformanceReport:
    """Check every message of ``path``; raises ConformanceInputError if it cannot be read."""
    if form not in FORMATS:
        raise ConformanceInputError(f"format {form!r}: expected one of {', '.join(FORMATS)}")
    try:
        with path.open("rb") as f:
            head = f.read(DETECT_BYTES)
    except OSError as exc:
        raise ConformanceInputError(f"{path}: {exc.strerror}") from exc
    form = _detect(head) if form == "auto" else form
    report = ConformanceReport(str(path), form)
    if form == "iso":
        _check_iso(path, ref, report)
        return report
    try:
        codec = AvroCodec(SchemaRegistry.from_dir(schemas_dir))
    except (OSError, ValueError, SerializationError) as exc:
        raise ConformanceInputError(f"schemas {schemas_dir}: {exc}") from exc
    for number, text in _lines(path):
        position = f"line {number}"
        if text is None:
            report.add([Problem(position, "line", f"longer than {MAX_LINE_BYTES} bytes")])
            continue
        if form == "capture":
            found = _one_captured(text, codec, ref, topic)
        else:
            found = _one_jsonl(text, codec, ref)
        report.add(Problem(position, check, detail) for check, detail in found)
    if form == "jsonl":
        report.notes.append("JSON Lines carry no key or signature: check a capture for those "
                            "(sakk publish --capture FILE --no-send)")  # fmt: skip
    return report


def _one_captured(text: str, codec: AvroCodec, ref: Reference, topic: str) -> Found:
    try:
        message = parse_captured(text)
    except ValueError as exc:
        return [("capture", str(exc))]
    return check_captured(message, codec, ref, topic)


def _one_jsonl(text: str, codec: AvroCodec, ref: Reference) -> Found:
    try:
        event, record = parse_message(text)
    except InvalidPaymentError as exc:
        return [("schema", f"{exc.field}: {exc.problem}")]
    try:
        codec.encode(event.name, record, validate=True)
    except SchemaValidationError as exc:
        return [("schema", str(exc)), *check_content(event, record, ref)]
    return check_content(event, record, ref)


def _check_iso(path: Path, ref: Reference, report: ConformanceReport) -> None:
    """Delegated to engine.iso's reader: its problems as reported, then each payment's."""
    from engine.iso import safe_xml
    from engine.iso.directory import BankDirectory
    from engine.iso.errors import IsoError
    from engine.iso.reader import read_message

    try:
        parsed = read_message(safe_xml.read_file(path), BankDirectory.from_rows(list(ref.bics)))
    except IsoError as exc:
        report.add([Problem("file", "iso", str(exc))])
        return
    issues: dict[int, list[Problem]] = {}
    for issue in parsed.issues:
        position = f"transaction {issue.index} ({issue.label})"
        issues.setdefault(issue.index, []).append(
            Problem(position, "iso", f"{issue.element}: {issue.reason}")
        )
    for _, found in sorted(issues.items()):
        report.add(found)
    for t in parsed.transactions:
        position = f"transaction {t.index} ({t.label})"
        report.add(
            Problem(position, check, detail)
            for check, detail in check_content(PAYMENT_INITIATED, t.payment, ref)
        )


def _detect(head: bytes) -> str:
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"<"):
        return "iso"
    first = text.split(b"\n", 1)[0].decode("utf-8", "replace")
    return "capture" if looks_like_capture(first) else "jsonl"


def _lines(path: Path) -> Iterator[tuple[int, str | None]]:
    """(line number, text) of the non-blank lines; None for an overlong or non-UTF-8 line."""
    with path.open("rb") as f:
        number = 0
        while True:
            raw = f.readline(MAX_LINE_BYTES + 1)
            if not raw:
                return
            number += 1
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                while raw and not raw.endswith(b"\n"):
                    raw = f.readline(MAX_LINE_BYTES + 1)
                yield number, None
                continue
            if raw.strip():
                yield number, raw.decode("utf-8", "replace")


def _masked(number: str) -> str:
    """An account number as a report may show it (``engine.masking``)."""
    return mask_account(number)
