"""Every API router under ``/api/v1``; the errors each route may answer, documented once."""

from __future__ import annotations

from fastapi import APIRouter

from sakk.console.api.audit import router as audit
from sakk.console.api.dead_letters import router as dead_letters
from sakk.console.api.notifications import router as notifications
from sakk.console.api.overview import router as overview
from sakk.console.api.payments import router as payments
from sakk.console.api.proposals import router as proposals
from sakk.console.api.reference import router as reference
from sakk.console.api.session import router as session
from sakk.console.api.settlement import router as settlement
from sakk.console.api.users import router as users
from sakk.console.errors import ERROR_RESPONSES

API_ROUTERS = (
    session,
    overview,
    payments,
    dead_letters,
    notifications,
    settlement,
    reference,
    audit,
    users,
    proposals,
)

api_router = APIRouter(prefix="/api/v1", responses=ERROR_RESPONSES)
for each in API_ROUTERS:
    api_router.include_router(each)
