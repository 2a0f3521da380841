"""The group picker (under /api/v1/catalog/businesses/{business_id}/groups)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from sqlalchemy.ext.asyncio import AsyncSession

from catalog.eligibility import schemas
from catalog.eligibility.service import Eligibility
from kit.auth import CurrentCoach
from kit.db import db_session

router = APIRouter(prefix="/businesses/{business_id}/groups", tags=["groups"])


async def eligibility(
    session: Annotated[AsyncSession, Depends(db_session, scope="function")],
) -> Eligibility:
    return Eligibility(session)


@router.get("", response_model=schemas.GroupList)
async def list_groups(
    coach: CurrentCoach, service: Annotated[Eligibility, Depends(eligibility)]
) -> schemas.GroupList:
    """The business's groups as the catalog knows them (for visibility "groups")."""
    return await service.groups(coach.business_id)
