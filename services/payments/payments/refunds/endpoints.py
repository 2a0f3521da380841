"""HTTP API of refunds (under /api/v1/payments)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from kit.auth import CurrentCoach
from kit.db import db_session
from payments.refunds import schemas
from payments.refunds.service import RefundService

router = APIRouter(tags=["refunds"])


async def refund_service(
    request: Request, session: Annotated[AsyncSession, Depends(db_session, scope="function")]
) -> RefundService:
    state = request.app.state
    return RefundService(session, state.outbox, state.stripe)


@router.post(
    "/businesses/{business_id}/orders/{order_id}/refunds",
    status_code=status.HTTP_201_CREATED,
    response_model=schemas.RefundOut,
    responses={200: {"description": "The refund this Idempotency-Key made before"}},
)
async def create_refund(
    order_id: uuid.UUID,
    body: schemas.RefundIn,
    idempotency_key: Annotated[str, Header(alias="Idempotency-Key", min_length=8, max_length=200)],
    coach: CurrentCoach,
    refunds: Annotated[RefundService, Depends(refund_service)],
    response: Response,
) -> schemas.RefundOut:
    """Refund a paid order through Stripe: all that is left of it when ``amount_minor`` is
    absent. More than is left is a 422 and changes nothing; the same Idempotency-Key
    again answers the first refund (200) and refunds nothing more."""
    out, created = await refunds.create(
        coach.business_id, order_id, body, idempotency_key, coach.principal.account_id
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return out
