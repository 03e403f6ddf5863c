"""Every operator action's request by name, to and from JSON: what a proposal holds.

A request is a frozen dataclass (``engine.ops.action``); :func:`to_json` turns it into
``{"action": NAME, "request": {...}}`` of JSON-safe values (money stays integer minor
units, times are ISO 8601 with their offset, bytes are base64) and :func:`from_json`
turns that back into the same request, checking every field's type: a request read
back from a proposal is exactly the one proposed, or a :class:`RegistryError`.

Fields the JSON cannot carry are given back by their decoder: a settlement instruction's
``write`` keeps nothing (the approver writes the instructions the result carries), a
confirmation's answers are read again from their files' bytes.

:data:`FOUR_EYES` names the actions one operator proposes and another approves
(``engine.ops.proposals``), among them every change of the console's users
(``engine.ops.users``, ``user.*``); :func:`register` adds an action kept elsewhere.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from engine.audit.window_settlement import Answer, read_answers
from engine.ledger.exceptions import LedgerError
from engine.ledger.notifications import NotificationFilter
from engine.ops.keys import RevokeKey
from engine.ops.limits import IssueMovement, SetBankLimit
from engine.ops.notifications import Redeliver
from engine.ops.redrive import RedriveCorrected
from engine.ops.reference import LoadReferenceFile, SetBankDelivery, SetFee, SetLimit
from engine.ops.users import (
    ChangeRole,
    CreateUser,
    IssueToken,
    ResetPassword,
    RevokeToken,
    SetDisabled,
)
from engine.ops.windows import AbortWindow, CloseWindow, ConfirmWindow, SettleWindow
from engine.read.positions import Window
from engine.risk.instruction import Parties

USER_ACTIONS_PREFIX = "user."  # engine/ops/users.py: every change of users, roles, tokens
USER_ACTIONS = (CreateUser, ChangeRole, SetDisabled, ResetPassword, IssueToken, RevokeToken)
FOUR_EYES = frozenset({
    SetBankLimit.name,  # a cap or an alert percentage
    IssueMovement.name,  # funds in or out
    SettleWindow.name, ConfirmWindow.name,  # settling or confirming a window
    RedriveCorrected.name,  # a dead letter sent again with a corrected body
    RevokeKey.name,  # a bank's key revoked
    Redeliver.name,  # notifications redelivered in bulk (see needs_four_eyes)
    *(kind.name for kind in USER_ACTIONS),  # users and their roles, passwords, tokens
})  # fmt: skip


class RegistryError(ValueError):
    """A request that is not registered, or JSON that is not a request of its action."""


Encode = Callable[[Any], dict[str, Any]]
Decode = Callable[[Mapping[str, Any]], Any]


@dataclass(frozen=True)
class Registration:
    name: str
    kind: type
    encode: Encode
    decode: Decode


_REGISTRY: dict[str, Registration] = {}


def register(kind: type, encode: Encode | None = None, decode: Decode | None = None) -> None:
    """Register ``kind`` (a frozen dataclass with a ``name``) under its name.

    Without ``encode``/``decode``, its fields are carried by their annotations (str, int,
    bool, float, datetime, bytes, dict, each optionally ``| None``).
    """
    name = getattr(kind, "name", None)
    if not isinstance(name, str) or not name:
        raise RegistryError(f"{kind!r} has no action name")
    known = _REGISTRY.get(name)
    if known is not None and known.kind is not kind:
        raise RegistryError(f"action {name} is already registered by {known.kind.__name__}")
    plain = fields_codec(kind)
    _REGISTRY[name] = Registration(name, kind, encode or plain[0], decode or plain[1])


def registered() -> list[str]:
    return sorted(_REGISTRY)


def needs_four_eyes(action: Any) -> bool:
    """Whether ``action`` is taken only once a second operator approves it.

    A redelivery is in bulk when it selects by status or bank, or names more than one id.
    """
    name = str(getattr(action, "name", ""))
    if isinstance(action, Redeliver):
        which = action.which
        return bool(which.status or which.bank or len(which.ids) > 1)
    return name in FOUR_EYES or name.startswith(USER_ACTIONS_PREFIX)


def to_json(action: Any) -> dict[str, Any]:
    """``{"action": NAME, "request": {...}}``: JSON-safe; :func:`from_json` reads it back."""
    name = getattr(action, "name", None)
    registration = _REGISTRY.get(name) if isinstance(name, str) else None
    if registration is None or not isinstance(action, registration.kind):
        raise RegistryError(f"{type(action).__name__} is not a registered operator action")
    return {"action": registration.name, "request": registration.encode(action)}


def from_json(data: Mapping[str, Any]) -> Any:
    """The request :func:`to_json` gave; a :class:`RegistryError` says what does not fit."""
    if not isinstance(data, Mapping) or set(data) != {"action", "request"}:
        raise RegistryError('expected {"action": NAME, "request": {...}}')
    registration = _REGISTRY.get(data["action"]) if isinstance(data["action"], str) else None
    if registration is None:
        raise RegistryError(f"unknown operator action {data['action']!r}; known: {registered()}")
    if not isinstance(data["request"], Mapping):
        raise RegistryError(f"{registration.name}: the request is a JSON object")
    try:
        return registration.decode(data["request"])
    except RegistryError:
        raise
    except (ValueError, TypeError, KeyError, LedgerError) as exc:  # a request's own checks
        raise RegistryError(f"{registration.name}: {exc}") from exc


# Plain fields, by their annotation.

_SCALARS: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "bool": (bool,),
                                         "float": (int, float)}  # fmt: skip


def _encode_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return value


def _decode_value(name: str, annotation: str, value: Any) -> Any:
    optional = annotation.endswith(" | None")
    base = annotation.removesuffix(" | None")
    if value is None:
        if optional:
            return None
        raise RegistryError(f"{name} is required")
    if base in _SCALARS:
        if isinstance(value, bool) and base != "bool" or not isinstance(value, _SCALARS[base]):
            raise RegistryError(f"{name}: expected {base}, got {type(value).__name__}")
        return float(cast(float, value)) if base == "float" else value
    if base == "datetime":
        return parse_time(name, value)
    if base == "bytes":
        return _bytes(name, value)
    if base.startswith(("dict[", "Mapping[")):
        if not isinstance(value, dict):
            raise RegistryError(f"{name}: expected an object")
        return value
    raise RegistryError(f"{name}: no JSON form for {annotation}")


def parse_time(name: str, value: Any) -> datetime:
    """An ISO 8601 time with its offset (a time without one is ambiguous: refused)."""
    if not isinstance(value, str):
        raise RegistryError(f"{name}: expected an ISO 8601 time")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise RegistryError(f"{name}: {value!r} is not an ISO 8601 time") from exc
    if moment.tzinfo is None:
        raise RegistryError(f"{name}: {value!r} has no UTC offset")
    return moment


def _bytes(name: str, value: Any) -> bytes:
    if not isinstance(value, str):
        raise RegistryError(f"{name}: expected base64")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RegistryError(f"{name}: not base64") from exc


def fields_codec(
    kind: type, special: Mapping[str, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {},
    given: Mapping[str, Callable[[], Any]] = {},
) -> tuple[Encode, Decode]:  # fmt: skip
    """Encode and decode ``kind``'s fields: by annotation, ``special`` ones by their own
    pair of functions, ``given`` ones left out of the JSON and made again on decoding."""
    fields = [f for f in dataclasses.fields(kind) if f.init and f.name not in given]

    def encode(action: Any) -> dict[str, Any]:
        return {f.name: special[f.name][0](getattr(action, f.name)) if f.name in special
                else _encode_value(getattr(action, f.name)) for f in fields}  # fmt: skip

    def decode(data: Mapping[str, Any]) -> Any:
        unknown = set(data) - {f.name for f in fields}
        if unknown:
            raise RegistryError(f"unknown fields {sorted(unknown)}")
        values: dict[str, Any] = {name: make() for name, make in given.items()}
        for f in fields:
            if f.name not in data:
                if f.default is not dataclasses.MISSING:
                    continue
                raise RegistryError(f"{f.name} is required")
            raw = data[f.name]
            values[f.name] = (special[f.name][1](raw) if f.name in special
                              else _decode_value(f.name, str(f.type), raw))  # fmt: skip
        return kind(**values)

    return encode, decode


# Values of their own shape.


def _object(name: str, value: Any, keys: set[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping) or not set(value) <= keys:
        raise RegistryError(f"{name}: expected an object of {sorted(keys)}")
    return value


def _window_json(window: Window) -> dict[str, Any]:
    return {"start": window.start.isoformat(), "hours": window.hours}


def _window_of(value: Any) -> Window:
    data = _object("window", value, {"start", "hours"})
    hours = _decode_value("window.hours", "int", data.get("hours"))
    return Window(parse_time("window.start", data.get("start")), hours)


def _parties_json(parties: Parties | None) -> dict[str, Any] | None:
    if parties is None:
        return None
    return {"switch": parties.switch, "settlement_bank": parties.settlement_bank,
            "bics": dict(parties.bics), "clearing_system": parties.clearing_system}  # fmt: skip


def _parties_of(value: Any) -> Parties | None:
    if value is None:
        return None
    data = _object("parties", value, {"switch", "settlement_bank", "bics", "clearing_system"})
    bics = data.get("bics", {})
    if not isinstance(bics, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in bics.items()
    ):
        raise RegistryError("parties.bics: expected an object of bank code -> BIC")
    return Parties(
        _decode_value("parties.switch", "str", data.get("switch")),
        _decode_value("parties.settlement_bank", "str", data.get("settlement_bank")),
        dict(bics),
        _decode_value("parties.clearing_system", "str", data.get("clearing_system")),
    )


def _answers_json(answers: Sequence[Answer]) -> list[dict[str, str]]:
    return [{"name": a.name, "data": _encode_value(a.data)} for a in answers]


def _files_of(value: Any) -> list[tuple[str, bytes]]:
    if not isinstance(value, list) or not value:
        raise RegistryError("answers: expected a list of {name, data}")
    files = []
    for i, item in enumerate(value):
        data = _object(f"answers[{i}]", item, {"name", "data"})
        name = _decode_value(f"answers[{i}].name", "str", data.get("name"))
        files.append((name, _bytes(f"answers[{i}].data", data.get("data"))))
    return files


def _encode_confirm(action: ConfirmWindow) -> dict[str, Any]:
    if action.parties is None:
        raise RegistryError("a confirmation held for approval names the parties it was read with")
    return {"label": action.label, "by": action.by, "parties": _parties_json(action.parties),
            "answers": _answers_json(action.answers)}  # fmt: skip


def _decode_confirm(data: Mapping[str, Any]) -> ConfirmWindow:
    _object("window.confirm", data, {"label", "by", "parties", "answers"})
    parties = _parties_of(data.get("parties"))
    if parties is None:
        raise RegistryError("parties is required")
    answers = read_answers(_files_of(data.get("answers")), parties)
    label = _decode_value("label", "str", data.get("label"))
    return ConfirmWindow(label, answers, _decode_value("by", "str", data.get("by")), parties)


def _filter_json(which: NotificationFilter) -> dict[str, Any]:
    return {"status": which.status, "bank": which.bank, "ids": list(which.ids),
            "since": None if which.since is None else which.since.isoformat()}  # fmt: skip


def _filter_of(value: Any) -> NotificationFilter:
    data = _object("which", value, {"status", "bank", "ids", "since"})
    ids = data.get("ids", [])
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise RegistryError("which.ids: expected a list of notification ids")
    since = data.get("since")
    return NotificationFilter(
        _decode_value("which.status", "str | None", data.get("status")),
        _decode_value("which.bank", "str | None", data.get("bank")),
        None if since is None else parse_time("which.since", since),
        tuple(ids),
    )


def _nowhere(_instructions: Mapping[str, bytes]) -> None:
    """A settlement approved from a proposal keeps its instructions in its result."""


def _register_all() -> None:
    for kind in (SetBankLimit, IssueMovement, AbortWindow, RevokeKey, RedriveCorrected,
                 SetFee, SetLimit, SetBankDelivery, LoadReferenceFile, *USER_ACTIONS):  # fmt: skip
        register(kind)
    register(CloseWindow, *fields_codec(CloseWindow, {"window": (_window_json, _window_of)}))
    parties = {"parties": (_parties_json, _parties_of)}
    register(SettleWindow, *fields_codec(SettleWindow, parties, {"write": lambda: _nowhere}))
    register(ConfirmWindow, _encode_confirm, _decode_confirm)
    register(Redeliver, *fields_codec(Redeliver, {"which": (_filter_json, _filter_of)}))


_register_all()
