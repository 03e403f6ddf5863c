"""Every API router under ``/api/v1``; the errors each route may answer, documented once."""

from __future__ import annotations

from fastapi import APIRouter

from sakk.console.api.payments import router as payments
from sakk.console.api.session import router as session
from sakk.console.errors import ERROR_RESPONSES

API_ROUTERS = (session, payments)

api_router = APIRouter(prefix="/api/v1", responses=ERROR_RESPONSES)
for each in API_ROUTERS:
    api_router.include_router(each)
