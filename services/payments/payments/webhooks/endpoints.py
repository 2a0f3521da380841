"""POST /api/v1/payments/webhooks/stripe: Stripe's webhook (raw body, signed)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request
from sqlalchemy.ext.asyncio import AsyncSession

from kit.db import db_session
from payments.webhooks import schemas
from payments.webhooks.service import WebhookIntake

router = APIRouter(tags=["webhooks"])


async def webhook_intake(
    request: Request, session: Annotated[AsyncSession, Depends(db_session, scope="function")]
) -> WebhookIntake:
    return WebhookIntake(session, request.app.state.settings)


@router.post("/webhooks/stripe", response_model=schemas.WebhookReceived)
async def stripe_webhook(
    request: Request,
    intake: Annotated[WebhookIntake, Depends(webhook_intake)],
    stripe_signature: Annotated[str | None, Header(alias="Stripe-Signature")] = None,
) -> schemas.WebhookReceived:
    """Verified (signature, 300 s tolerance), stored and committed before the 200; the
    worker processes it. Anything that does not verify is a 400 and stores nothing."""
    await intake.receive(await request.body(), stripe_signature)
    return schemas.WebhookReceived()
