"""HTTP API of the activity feed (under /api/v1/payments)."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlalchemy.ext.asyncio import AsyncSession

from kit.auth import CurrentCoach
from kit.db import db_session
from payments.activity import schemas
from payments.activity.service import ActivityService

router = APIRouter(tags=["activity"])


async def activity_service(
    session: Annotated[AsyncSession, Depends(db_session, scope="function")],
) -> ActivityService:
    return ActivityService(session)


@router.get("/businesses/{business_id}/activity", response_model=schemas.ActivityPage)
async def activity(
    coach: CurrentCoach,
    service: Annotated[ActivityService, Depends(activity_service)],
    kind: Annotated[list[schemas.Kind] | None, Query()] = None,
    since: Annotated[date | None, Query(alias="from")] = None,
    until: Annotated[date | None, Query(alias="to")] = None,
    cursor: Annotated[str | None, Query(max_length=300)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    period: Annotated[schemas.Period | None, Query()] = None,
) -> schemas.ActivityPage:
    """Purchases (paid), failed payments and refunds, newest first. ``kind`` (repeatable)
    picks entries; ``from`` and ``to`` are UTC days, both included; ``cursor`` is the
    previous page's ``next_cursor``. ``summary`` (and ``totals`` per ``period``) give
    gross, refunded and net per currency for the date range."""
    return await service.feed(coach.business_id, kind, since, until, cursor, limit, period)
