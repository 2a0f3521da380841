"""HTTP API of the emails domain (under /api/v1/notifications)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlalchemy.ext.asyncio import AsyncSession

from kit.auth import CurrentCoach
from kit.db import db_session
from kit.validation import MAX_OFFSET
from notifications.emails import schemas
from notifications.emails.service import list_business_emails

router = APIRouter(tags=["emails"])

Session = Annotated[AsyncSession, Depends(db_session, scope="function")]


@router.get("/businesses/{business_id}/emails", response_model=schemas.EmailPage)
async def list_emails(
    coach: CurrentCoach,
    session: Session,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    status: schemas.EmailStatus | None = None,
) -> schemas.EmailPage:
    """The emails sent (or being sent) for a business, newest first. Its staff only."""
    return await list_business_emails(session, coach.business_id, status, limit, offset)
