"""POST /api/v1/payments/webhooks/stripe: Stripe's webhook (raw body, signed)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Header, Request
from prometheus_client import Counter
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kit.db import retrying_on_disconnect
from kit.errors import Unavailable
from kit.logging import get_logger
from kit.metrics import touch
from payments.config import PaymentsSettings
from payments.stripe_gateway.gateway import InvalidWebhook
from payments.webhooks import schemas
from payments.webhooks.service import WebhookIntake

router = APIRouter(tags=["webhooks"])
log = get_logger(__name__)

WEBHOOKS = Counter(
    "clientele_stripe_webhooks",
    "Stripe webhooks received, by outcome: stored, duplicate (answered 200, stored before), "
    "bad_signature (400: missing, wrong or stale signature, or no secret configured), "
    "db_unavailable (503, Stripe retries).",
    ["outcome"],
)
WEBHOOK_OUTCOMES = ("stored", "duplicate", "bad_signature", "db_unavailable")
touch(WEBHOOKS, *((outcome,) for outcome in WEBHOOK_OUTCOMES))

# Longest a webhook may wait for the database (a free connection, the insert, the
# commit). A healthy insert takes milliseconds; when the database is away the pool
# would otherwise keep requests waiting for its full checkout timeout (30 s), and
# Stripe retries a 503 anyway.
INTAKE_TIMEOUT_SECONDS = 5.0


@router.post("/webhooks/stripe", response_model=schemas.WebhookReceived)
async def stripe_webhook(
    request: Request,
    stripe_signature: Annotated[str | None, Header(alias="Stripe-Signature")] = None,
) -> schemas.WebhookReceived:
    """Verified (signature, 300 s tolerance), stored and committed before the 200; the
    worker processes it. Anything that does not verify is a 400 and stores nothing.
    When the event cannot be stored (database unreachable or too slow) the answer is a
    503, never a 2xx: Stripe delivers it again later."""
    settings: PaymentsSettings = request.app.state.settings
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    payload = await request.body()
    intake = WebhookIntake(settings)
    try:
        event = intake.verify(payload, stripe_signature)
    except InvalidWebhook:
        WEBHOOKS.labels("bad_signature").inc()
        raise

    async def store() -> bool:
        async with sessionmaker() as session, session.begin():
            return await intake.store(session, event, payload)

    try:
        async with asyncio.timeout(INTAKE_TIMEOUT_SECONDS):
            # Storing twice keeps one row: a connection that died under the insert (or its
            # commit) is tried again on a fresh one, within the same budget.
            stored = await retrying_on_disconnect(store, what="stripe_event_intake")
    except (TimeoutError, OSError, DBAPIError) as exc:
        WEBHOOKS.labels("db_unavailable").inc()
        log.warning("stripe_event_not_stored", stripe_event=event["id"], error=type(exc).__name__)
        raise Unavailable(
            "The event could not be stored; deliver it again later.",
            headers={"Retry-After": "10"},
        ) from exc
    WEBHOOKS.labels("stored" if stored else "duplicate").inc()
    return schemas.WebhookReceived()
