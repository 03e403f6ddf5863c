"""What the console's pages share: the templates, the navigation each role gets, the errors
shown as pages, and the values a template formats (money, times, masked rows).

Pages read through ``engine.read`` and act through ``engine.ops``, like the JSON API; they
never hold SQL. Every form that changes something carries the session's CSRF token
(``csrf_token``), which ``sakk.console.auth.principal`` checks before the route runs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from engine.config import Settings
from engine.money import format_minor
from engine.ops.action import ActionRefusedError
from engine.read.audience import Role
from engine.read.exceptions import NotVisibleError, ReadError
from engine.times import as_utc
from sakk.console.auth import Principal, require_any
from sakk.console.errors import ConsoleError

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
TEMPLATES = Jinja2Templates(directory=str(TEMPLATES_DIR))
MAX_CELL_CHARS = 200  # a table cell shows at most this much of a value


@dataclass(frozen=True)
class NavItem:
    path: str
    label: str
    roles: frozenset[Role]


EVERYONE = frozenset(Role)
READERS = frozenset({Role.OPERATOR, Role.AUDITOR})
OPERATORS = frozenset({Role.OPERATOR})
NAVIGATION = (
    NavItem("/", "Overview", EVERYONE),
    NavItem("/payments", "Payments", EVERYONE),
    NavItem("/dead-letters", "Dead letters", READERS),
    NavItem("/notifications", "Notifications", EVERYONE),
    NavItem("/settlement", "Settlement", EVERYONE),
    NavItem("/banks", "Banks and keys", EVERYONE),
    NavItem("/reference", "Reference data", READERS),
    NavItem("/users", "Users", READERS),
    NavItem("/proposals", "Proposals", READERS),
    NavItem("/audit", "Audit", READERS),
)


class PageError(Exception):
    """A page that cannot be shown: its status and the words for the person."""

    def __init__(self, status: int, message: str, who: Principal | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.who = status, message, who


def need(who: Principal, roles: frozenset[Role]) -> None:
    """Refuse (403) a signed-in user whose role may not see or do this."""
    if who.role not in roles:
        allowed = " or ".join(sorted(r.value for r in roles))
        raise PageError(403, f"a {who.role.value} user may not: this needs {allowed}", who)


def _reader(who: Annotated[Principal, Depends(require_any)]) -> Principal:
    need(who, READERS)
    return who


def _operator(who: Annotated[Principal, Depends(require_any)]) -> Principal:
    need(who, OPERATORS)
    return who


# A page's caller, checked before its form or query is read (a refusal comes first).
Reader = Annotated[Principal, Depends(_reader)]  # an operator or an auditor
Operator = Annotated[Principal, Depends(_operator)]


@contextmanager
def shown_as_page(who: Principal) -> Iterator[None]:
    """The read side's and the actions' errors, as pages (the API answers them as JSON)."""
    try:
        yield
    except NotVisibleError as exc:  # another bank's and a missing one: the same words
        raise PageError(404, str(exc), who) from exc
    except ReadError as exc:
        raise PageError(400, str(exc), who) from exc
    except ActionRefusedError as exc:
        raise PageError(409, f"refused: {exc.reason}", who) from exc
    except ConsoleError as exc:
        raise PageError(exc.status, exc.message, who) from exc


def page(
    request: Request,
    who: Principal,
    template: str,
    title: str,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """A page in the console's layout: the navigation for ``who``'s role, its CSRF token."""
    nav = [item for item in NAVIGATION if who.role in item.roles]
    context.update(
        title=title, who=who, nav=nav, csrf_token=who.csrf_token or "", path=request.url.path,
        operator=who.role is Role.OPERATOR, bank=who.bank_code,
    )  # fmt: skip
    return TEMPLATES.TemplateResponse(request, template, context, status_code=status_code)


def settings_of(request: Request) -> Settings:
    """The switch's settings the console runs with (its broker, schemas, message sizes)."""
    settings: Settings = request.app.state.settings
    return settings


def money(amount_minor: int | None, currency: str = "MAD") -> str:
    return "" if amount_minor is None else format_minor(int(amount_minor), currency)


def when(moment: datetime | str | None) -> str:
    """A time as people read it here: UTC, to the second."""
    if moment is None:
        return ""
    if isinstance(moment, str):  # an ISO 8601 time from a record's JSON
        try:
            parsed = datetime.fromisoformat(moment)
        except ValueError:
            return moment
        return as_utc(parsed).strftime("%Y-%m-%d %H:%M:%S")
    return as_utc(moment).strftime("%Y-%m-%d %H:%M:%S")


def cell(value: Any) -> str:
    """Any stored value as table text: times readable, bytes as the start of their hex."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return when(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()[:16] + "…"
    text = str(value)
    return text if len(text) <= MAX_CELL_CHARS else text[:MAX_CELL_CHARS] + "…"


def cell_of(row: Mapping[str, Any], column: str) -> str:
    """A row's value as table text; amounts (``*_minor``) in their row's currency."""
    value = row.get(column)
    if column.endswith("_minor") and isinstance(value, int) and not isinstance(value, bool):
        return money(value, str(row.get("currency") or "MAD"))
    return cell(value)


def columns_of(rows: list[Mapping[str, Any]] | tuple[Mapping[str, Any], ...]) -> list[str]:
    """The columns of a table of rows: every key any row has, in first-seen order."""
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row))
    return list(seen)


TEMPLATES.env.filters.update(money=money, when=when, cell=cell)
TEMPLATES.env.globals.update(columns_of=columns_of, cell_of=cell_of)


def error_page(request: Request, exc: Exception) -> HTMLResponse:
    """A :class:`PageError` as a page in the layout (bare when nobody is known)."""
    if not isinstance(exc, PageError):
        raise TypeError(f"not a page error: {exc!r}")
    who = exc.who
    if who is None:
        context = {"title": "Error", "message": exc.message, "status": exc.status}
        return TEMPLATES.TemplateResponse(request, "error.html", context, status_code=exc.status)
    return page(
        request, who, "error.html", f"{exc.status}", exc.status, message=exc.message,
        status=exc.status,
    )  # fmt: skip
