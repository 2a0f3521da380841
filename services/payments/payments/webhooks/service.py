"""Stripe webhooks.

Intake (api): verify the signature, store the event once (unique Stripe event
id) and let the request's commit happen before the 200. Nothing else happens in
the request, so Stripe never waits on our business logic and a redelivery is a
no-op.

Processing (worker): one stored event at a time, each in its own transaction
with the order's row locked, through :class:`Settlement`:
``payment_intent.succeeded`` settles paid (once), ``payment_intent.payment_failed``
fails an order that is still open (a stale failure after success never un-pays).
An event that cannot be handled yet is retried with a growing pause.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kit.db import utcnow
from kit.logging import get_logger
from kit.messaging import Outbox
from payments.config import PaymentsSettings
from payments.models import Order
from payments.orders.repository import OrderRepository
from payments.orders.settlement import Settlement
from payments.stripe_gateway.gateway import StripeGateway, payment_intent_info
from payments.webhooks.repository import StripeEventRepository

log = get_logger(__name__)

SUCCEEDED = "payment_intent.succeeded"
PAYMENT_FAILED = "payment_intent.payment_failed"
HANDLED = (SUCCEEDED, PAYMENT_FAILED)
MAX_RETRY_SECONDS = 300


@dataclass
class WebhookIntake:
    session: AsyncSession
    settings: PaymentsSettings

    async def receive(self, payload: bytes, signature: str | None) -> bool:
        event = StripeGateway.verify_webhook(
            payload,
            signature,
            self.settings.stripe_webhook_secret,
            self.settings.stripe_webhook_tolerance_seconds,
        )
        stored = await StripeEventRepository(self.session).store(
            event["id"], event["type"], payload.decode("utf-8"), utcnow()
        )
        log.info("stripe_event_received", stripe_event=event["id"], type=event["type"], new=stored)
        return stored


class NotReadyYet(Exception):
    """The event names something we cannot see yet; try again later."""


@dataclass
class StripeEventProcessor:
    sessionmaker: async_sessionmaker[AsyncSession]
    outbox: Outbox
    max_attempts: int = 20

    async def process_pending(self, limit: int = 100) -> int:
        """Process due events one by one; the number handled."""
        done = 0
        for _ in range(limit):
            outcome = await self._process_one()
            if outcome is None:
                break
            done += 1
        return done

    async def _process_one(self) -> str | None:
        now = utcnow()
        event_id: uuid.UUID | None = None
        try:
            async with self.sessionmaker() as session, session.begin():
                events = StripeEventRepository(session)
                event = await events.claim_next(now)
                if event is None:
                    return None
                event_id = event.id
                outcome = await self.handle(session, event.type, json.loads(event.payload))
                event.processed_at = utcnow()
                event.attempts += 1
                event.outcome = outcome
                return outcome
        except Exception as exc:
            if event_id is None:
                raise
            await self._retry_later(event_id, exc)
            return "retry"

    async def _retry_later(self, event_id: uuid.UUID, exc: BaseException) -> None:
        async with self.sessionmaker() as session, session.begin():
            event = await StripeEventRepository(session).get(event_id)
            if event is None:
                return
            event.attempts += 1
            event.outcome = f"error: {type(exc).__name__}"[:200]
            if event.attempts >= self.max_attempts:
                event.processed_at = utcnow()
                event.outcome = f"gave up: {type(exc).__name__}"[:200]
                log.error("stripe_event_given_up", stripe_event=event.stripe_event_id)
            else:
                pause = min(2**event.attempts, MAX_RETRY_SECONDS)
                event.available_at = utcnow() + timedelta(seconds=pause)
                log.warning(
                    "stripe_event_retry",
                    stripe_event=event.stripe_event_id,
                    error=type(exc).__name__,
                    attempts=event.attempts,
                )

    async def handle(self, session: AsyncSession, type_: str, event: dict[str, Any]) -> str:
        if type_ not in HANDLED:
            return "ignored"
        intent = payment_intent_info(event["data"]["object"])
        order = await self._order_for(session, intent.id, intent.metadata.get("order_id"))
        if order is None:
            return "not_ours"
        settlement = Settlement(session, self.outbox)
        if type_ == SUCCEEDED:
            return await settlement.apply(order, intent)
        if order.stripe_payment_intent_id != intent.id:
            return "other_payment_intent"
        failed = await settlement.failed(order, intent.failure_message)
        return "failed" if failed else "unchanged"

    async def _order_for(
        self, session: AsyncSession, payment_intent_id: str, order_id: str | None
    ) -> Order | None:
        """The order of a PaymentIntent, locked. By our column; else by the order id in
        its metadata (a pay whose commit was lost after Stripe charged)."""
        repo = OrderRepository(session)
        order = await repo.lock_by_payment_intent(payment_intent_id)
        if order is not None or not order_id:
            return order
        try:
            wanted = uuid.UUID(order_id)
        except ValueError:
            return None
        order = await repo.lock(wanted)
        if order is None:
            return None
        if order.stripe_payment_intent_id is None:
            order.stripe_payment_intent_id = payment_intent_id
            order.payment_started_at = order.payment_started_at or utcnow()
        return order
