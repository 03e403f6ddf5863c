"""Banks, their keys, reference data (fees, limits) and its versions, approved schemas."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from engine.read.reference import (
    BankView,
    approved_schemas,
    bank_keys,
    banks,
    current_reference,
    reference_versions,
)
from sakk.console.api.common import Out, reading
from sakk.console.auth import Principal, require_any

router = APIRouter(tags=["reference"])


class BankList(Out):
    banks: list[BankView]


class KeyOut(Out):
    bank_code: str
    key_id: str
    public_key: str
    valid_from: datetime
    valid_until: datetime | None
    revoked_at: datetime | None


class KeyList(Out):
    keys: list[KeyOut]


class ReferenceOut(Out):
    fees: list[dict[str, Any]]
    limits: list[dict[str, Any]]


class VersionOut(Out):
    version: int
    kind: str
    item: str
    old: Any
    new: Any
    announced_at: datetime
    effective_from: datetime


class VersionList(Out):
    versions: list[VersionOut]


class SchemaOut(Out):
    id: int
    fingerprint: str
    identity: str
    event_type: str
    origin: str
    approved_by: str
    approved_at: datetime


class SchemaList(Out):
    schemas: list[SchemaOut]


@router.get("/banks", response_model=BankList, summary="The banks (another's settings hidden)")
def bank_list(request: Request, who: Annotated[Principal, Depends(require_any)]) -> BankList:
    with reading(request) as conn:
        return BankList(banks=banks(conn, who.audience))


@router.get("/keys", response_model=KeyList, summary="The banks' public keys (a bank: its own)")
def keys(
    request: Request,
    who: Annotated[Principal, Depends(require_any)],
    bank: Annotated[str | None, Query(min_length=1, max_length=8, pattern="^[0-9A-Za-z]+$")] = None,
) -> KeyList:
    with reading(request) as conn:
        found = bank_keys(conn, who.audience, bank)
    return KeyList(keys=[KeyOut(**k.as_row()) for k in found])


@router.get("/reference", response_model=ReferenceOut, summary="Fees and limits in force")
def reference(request: Request, who: Annotated[Principal, Depends(require_any)]) -> ReferenceOut:
    with reading(request) as conn:
        return ReferenceOut(**current_reference(conn))


@router.get(
    "/reference/versions", response_model=VersionList,
    summary="Every change of reference data (a bank: fees, limits and its own settings)",
)  # fmt: skip
def versions(request: Request, who: Annotated[Principal, Depends(require_any)]) -> VersionList:
    with reading(request) as conn:
        found = reference_versions(conn, who.audience)
    return VersionList(versions=[VersionOut(
        version=v.version, kind=v.kind, item=v.item, old=v.old, new=v.new,
        announced_at=v.announced_at, effective_from=v.effective_from,
    ) for v in found])  # fmt: skip


@router.get("/reference/schemas", response_model=SchemaList, summary="Approved writer schemas")
def schemas(request: Request, who: Annotated[Principal, Depends(require_any)]) -> SchemaList:
    with reading(request) as conn:
        found = approved_schemas(conn)
    return SchemaList(schemas=[SchemaOut(
        id=s.id, fingerprint=s.fingerprint.hex(), identity=s.identity, event_type=s.event_type,
        origin=s.origin, approved_by=s.approved_by, approved_at=s.approved_at,
    ) for s in found])  # fmt: skip
