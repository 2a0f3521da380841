"""HTTP API of subscriptions (under /api/v1/payments)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession

from kit.auth import CurrentAccount, OptionalViewer
from kit.db import db_session
from payments.subscriptions import schemas
from payments.subscriptions.service import SubscriptionService

router = APIRouter(tags=["subscriptions"])


async def subscription_service(
    request: Request, session: Annotated[AsyncSession, Depends(db_session, scope="function")]
) -> SubscriptionService:
    state = request.app.state
    return SubscriptionService(session, state.outbox, state.settings, state.stripe)


Subscriptions = Annotated[SubscriptionService, Depends(subscription_service)]
Token = Annotated[str | None, Query(max_length=200)]


@router.get("/me/billing", response_model=schemas.MyBilling)
async def my_billing(viewer: CurrentAccount, subscriptions: Subscriptions) -> schemas.MyBilling:
    """The logged-in buyer's saved cards and subscriptions, in every business."""
    return await subscriptions.mine(viewer)


@router.get("/subscriptions/{subscription_id}", response_model=schemas.SubscriptionOut)
async def get_subscription(
    subscription_id: uuid.UUID,
    viewer: OptionalViewer,
    subscriptions: Subscriptions,
    token: Token = None,
) -> schemas.SubscriptionOut:
    return await subscriptions.get(subscription_id, viewer, token)


@router.post("/subscriptions/{subscription_id}/cancel", response_model=schemas.SubscriptionOut)
async def cancel_subscription(
    subscription_id: uuid.UUID, viewer: CurrentAccount, subscriptions: Subscriptions
) -> schemas.SubscriptionOut:
    """Cancel at the end of the paid period; a payment plan answers 409."""
    return await subscriptions.cancel(subscription_id, viewer)


@router.post("/subscriptions/{subscription_id}/card-setup", response_model=schemas.CardSetupOut)
async def card_setup(
    subscription_id: uuid.UUID,
    viewer: OptionalViewer,
    subscriptions: Subscriptions,
    token: Token = None,
) -> schemas.CardSetupOut:
    """A SetupIntent for a new card (confirm it with Stripe.js confirmCardSetup)."""
    return await subscriptions.card_setup(subscription_id, viewer, token)


@router.post("/subscriptions/{subscription_id}/card", response_model=schemas.SubscriptionOut)
async def update_card(
    subscription_id: uuid.UUID,
    body: schemas.NewCardIn,
    viewer: OptionalViewer,
    subscriptions: Subscriptions,
    token: Token = None,
) -> schemas.SubscriptionOut:
    """The card this subscription charges from now on; a past-due invoice is retried."""
    return await subscriptions.update_card(subscription_id, body, viewer, token)
