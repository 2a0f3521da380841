"""Stripe webhooks.

Intake (api): verify the signature, store the event once (unique Stripe event
id) and let the request's commit happen before the 200. Nothing else happens in
the request, so Stripe never waits on our business logic and a redelivery is a
no-op.

Processing (worker): each stored event in its own transaction (a few at once
on PostgreSQL, claimed with SKIP LOCKED) with the order's row locked, through
:class:`Settlement`:
``payment_intent.succeeded`` settles paid (once), ``payment_intent.payment_failed``
fails an order that is still open (a stale failure after success never un-pays).
An event that cannot be handled yet is retried with a growing pause.
"""

from __future__ import annotations

import asyncio
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
from payments.stripe_gateway.gateway import (
    StripeGateway,
    invoice_info,
    payment_intent_info,
    stripe_time,
    subscription_info,
)
from payments.subscriptions.repository import SubscriptionRepository
from payments.subscriptions.settlement import SubscriptionSettlement
from payments.webhooks.repository import StripeEventRepository

log = get_logger(__name__)

SUCCEEDED = "payment_intent.succeeded"
PAYMENT_FAILED = "payment_intent.payment_failed"
HANDLED = (SUCCEEDED, PAYMENT_FAILED)
INVOICE_PAID = ("invoice.payment_succeeded", "invoice.paid")
INVOICE_FAILED = "invoice.payment_failed"
SUBSCRIPTION_UPDATED = "customer.subscription.updated"
SUBSCRIPTION_DELETED = "customer.subscription.deleted"
SUBSCRIPTION_EVENTS = (*INVOICE_PAID, INVOICE_FAILED, SUBSCRIPTION_UPDATED, SUBSCRIPTION_DELETED)
MAX_RETRY_SECONDS = 300
# A subscription we do not know yet may be one whose creating request has not
# committed: retried for this long, then taken as not ours.
UNKNOWN_SUBSCRIPTION_GRACE = timedelta(minutes=10)


@dataclass
class WebhookIntake:
    settings: PaymentsSettings

    def verify(self, payload: bytes, signature: str | None) -> dict[str, Any]:
        """The event, if the signature verifies (else ``InvalidWebhook``, a 400)."""
        return dict(
            StripeGateway.verify_webhook(
                payload,
                signature,
                self.settings.stripe_webhook_secret,
                self.settings.stripe_webhook_tolerance_seconds,
            )
        )

    async def store(self, session: AsyncSession, event: dict[str, Any], payload: bytes) -> bool:
        """Keep a verified event (once); True if it was new. The caller commits."""
        stored = await StripeEventRepository(session).store(
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
    # Subscriptions: a finished payment plan is canceled in Stripe; failed-payment
    # emails carry an update-card link signed with the secret key.
    stripe: StripeGateway
    secret_key: str
    max_attempts: int = 20

    # Events processed at once by one worker on PostgreSQL (each in its own transaction,
    # claimed with SKIP LOCKED), so database round trips overlap. SQLite: one at a time.
    lanes: int = 4

    async def process_pending(self, limit: int = 2000) -> int:
        """Process due events until none is left (or ``limit``); the number handled."""
        done = 0
        bind = self.sessionmaker.kw.get("bind")
        lanes = self.lanes if bind is not None and bind.dialect.name == "postgresql" else 1

        async def lane() -> None:
            nonlocal done
            while done < limit:
                if await self._process_one() is None:
                    return
                done += 1

        results = await asyncio.gather(*(lane() for _ in range(lanes)), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
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
        # -- refunds (payments/refunds): a refund made in Stripe's dashboard -------------
        if type_ == "charge.refunded":
            from payments.refunds.service import Refunds

            return await Refunds(session, self.outbox).charge_refunded(event["data"]["object"])
        # ---------------------------------------------------------------------------------
        if type_ in SUBSCRIPTION_EVENTS:
            return await self._subscription_event(session, type_, event)
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

    async def _subscription_event(
        self, session: AsyncSession, type_: str, event: dict[str, Any]
    ) -> str:
        """Invoices and subscription changes, with the order's row locked, then the
        subscription's (the order a subscription belongs to is looked up first)."""
        obj = event["data"]["object"]
        if type_.startswith("invoice."):
            invoice = invoice_info(obj)
            stripe_id = invoice.subscription
        else:
            info = subscription_info(obj)
            stripe_id = info.id
        if not stripe_id:
            return "not_ours"
        order_id = await SubscriptionRepository(session).order_id_of_stripe(stripe_id)
        if order_id is None:
            created = stripe_time(event.get("created"))
            if created is not None and utcnow() - created < UNKNOWN_SUBSCRIPTION_GRACE:
                raise NotReadyYet(f"subscription {stripe_id} is not known yet")
            return "not_ours"
        order = await OrderRepository(session).lock(order_id)
        subscription = await SubscriptionRepository(session).lock_of_order(order_id)
        if order is None or subscription is None:
            return "not_ours"
        settlement = SubscriptionSettlement(session, self.outbox, self.stripe, self.secret_key)
        if type_ in INVOICE_PAID:
            return await settlement.invoice_paid(order, subscription, invoice)
        if type_ == INVOICE_FAILED:
            message = invoice.payment_intent.failure_message if invoice.payment_intent else None
            return await settlement.invoice_failed(order, subscription, invoice, message)
        if type_ == SUBSCRIPTION_DELETED:
            return await settlement.deleted(order, subscription, info)
        return await settlement.updated(
            order, subscription, info, stripe_time(event.get("created"))
        )

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
