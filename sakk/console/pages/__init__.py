"""The console's screens: server-rendered pages (Jinja2, ``sakk/console/templates``), plain
CSS and no script, one module per screen. Each reads through ``engine.read`` and acts
through ``engine.ops`` as the JSON API does, behind the same role checks
(``sakk.console.auth``); a bank user gets its own bank's view of each screen it may see.

Why server-rendered: every screen is a list, a form or a page of facts; rendered on the
server, the role checks, the masking and the CSRF token all stay where they are enforced,
the pages work without script under a strict Content-Security-Policy, and there is no
front end to build or to keep apart from the API.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from sakk.console.pages.audit import router as audit
from sakk.console.pages.banks import router as banks
from sakk.console.pages.dead_letters import router as dead_letters
from sakk.console.pages.notifications import router as notifications
from sakk.console.pages.overview import router as overview
from sakk.console.pages.payments import router as payments
from sakk.console.pages.proposals import router as proposals
from sakk.console.pages.render import PageError, error_page
from sakk.console.pages.settlement import router as settlement
from sakk.console.pages.users import router as users

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
SCREENS = (
    overview,
    payments,
    dead_letters,
    notifications,
    settlement,
    banks,
    users,
    proposals,
    audit,
)  # fmt: skip  (the routers, in the navigation's order)


def install(app: FastAPI) -> None:
    """Add the screens, their static files and their error pages to the console ``app``."""
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_exception_handler(PageError, error_page)
    for screen in SCREENS:
        app.include_router(screen)
