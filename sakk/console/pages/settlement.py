"""Settlement: the liquidity board (position and holds, net debit cap, liquidity, share of
the cap used), the windows and their states with each bank's net, and closing a window.

A bank user sees its own line only, on the board and in the nets (the read side keeps it
so). Closing is one operator's action (the API's, so both close alike); settling,
confirming and funds in or out, which move money, are four-eyes proposals filed from
this screen too (``sakk.console.pages.settlement_actions``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse

from engine.ops.limits import MOVEMENT_KINDS
from engine.ops.proposals import Proposal
from engine.read.liquidity import liquidity_board
from engine.read.windows import list_windows
from sakk.cli.positions import percent
from sakk.console.api.common import REASON_CHARS, reading
from sakk.console.api.settlement import WINDOW_TEXT, CloseIn, close
from sakk.console.auth import Principal, require_any
from sakk.console.pages.render import Operator, page, shown_as_page

router = APIRouter(include_in_schema=False)
WINDOWS_SHOWN = 30  # the newest windows the page lists (older: the API pages on)


def settlement_page(
    request: Request, who: Principal, chosen: str = "", notice: str | None = None,
    made: Proposal | None = None, problems: Sequence[str] = (), status_code: int = 200,
) -> HTMLResponse:  # fmt: skip
    """The screen with window ``chosen`` shown; ``made``: the proposal just filed,
    ``problems``: why what was asked was refused, each on its own line."""
    with shown_as_page(who), reading(request) as conn:
        board = liquidity_board(conn, who.audience)
        windows = list(list_windows(conn, who.audience, limit=WINDOWS_SHOWN).items)
    shown = next((w for w in windows if w.label == chosen), windows[0] if windows else None)
    return page(
        request, who, "settlement.html", "Settlement", status_code, board=board,
        windows=windows, shown=shown, percent=percent, notice=notice, made=made,
        problems=list(problems), movement_kinds=MOVEMENT_KINDS,
    )  # fmt: skip


@router.get("/settlement", response_class=HTMLResponse)
def settlement(
    request: Request,
    who: Annotated[Principal, Depends(require_any)],
    window: Annotated[str, Query(max_length=40)] = "",
) -> HTMLResponse:
    return settlement_page(request, who, window)


@router.post("/settlement/close", response_class=HTMLResponse)
def close_window(
    request: Request,
    who: Operator,
    window: Annotated[str, Form(pattern=WINDOW_TEXT)],
    early: Annotated[bool, Form()] = False,
    reason: Annotated[str, Form(max_length=REASON_CHARS)] = "",
) -> HTMLResponse:
    """Close ``window`` (its nets become final), as ``POST /api/v1/settlement/windows/close``."""
    label = window.split("/")[0]
    with shown_as_page(who):
        done = close(request, CloseIn(window=label, early=early, reason=reason or None), who)
    where = f", published to {done.published}" if done.published else ", recorded (no broker)"
    notice = f"window {label} closed{where}" if done.seq else f"window {label} was closed already"
    return settlement_page(request, who, label, notice)
