"""Reconciliation: the safety net for lost webhooks and abandoned 3-D Secure pages.

Orders still open (pending, requires action) whose PaymentIntent (or subscription)
was created more than ``reconcile_after_seconds`` ago are re-read from Stripe and settled through
the same :class:`Settlement` as everything else, each in its own transaction with
the order's row locked.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kit.db import utcnow
from kit.logging import get_logger
from kit.messaging import Outbox
from payments.models import OPEN_STATUSES
from payments.orders.repository import OrderRepository
from payments.orders.settlement import Settlement
from payments.stripe_gateway.gateway import StripeGateway
from payments.subscriptions.repository import SubscriptionRepository
from payments.subscriptions.settlement import SubscriptionSettlement

log = get_logger(__name__)


@dataclass
class Reconciler:
    sessionmaker: async_sessionmaker[AsyncSession]
    outbox: Outbox
    stripe: StripeGateway
    after_seconds: int
    secret_key: str = ""  # signs update-card links (never needed for a first invoice)
    batch_size: int = 100

    async def run_once(self) -> dict[str, int]:
        """Re-read each stale open order's PaymentIntent; counts of outcomes."""
        cutoff = utcnow() - timedelta(seconds=self.after_seconds)
        async with self.sessionmaker() as session:
            order_ids = await OrderRepository(session).stale_open_payments(cutoff, self.batch_size)
            order_ids += await SubscriptionRepository(session).stale_incomplete(
                cutoff, self.batch_size
            )
        outcomes: dict[str, int] = {}
        for order_id in order_ids:
            try:
                outcome = await self.reconcile(order_id)
            except Exception as exc:
                log.warning("reconcile_failed", order_id=str(order_id), error=type(exc).__name__)
                outcome = "error"
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        return outcomes

    async def reconcile(self, order_id: uuid.UUID) -> str:
        async with self.sessionmaker() as session, session.begin():
            order = await OrderRepository(session).lock(order_id)
            if order is None or order.status not in OPEN_STATUSES:
                return "settled_meanwhile"
            subscription = await SubscriptionRepository(session).lock_of_order(order_id)
            if subscription is not None:
                settlement = SubscriptionSettlement(
                    session, self.outbox, self.stripe, self.secret_key
                )
                outcome, _ = await settlement.refresh(order, subscription)
                if outcome != "unchanged":
                    log.info("order_reconciled", order_id=str(order_id), outcome=outcome)
                return outcome
            if order.stripe_payment_intent_id is None:
                return "no_payment_intent"
            intent = await self.stripe.payment_intent(order.stripe_payment_intent_id)
            outcome = await Settlement(session, self.outbox).apply(order, intent)
            if outcome != "unchanged":
                log.info("order_reconciled", order_id=str(order_id), outcome=outcome)
            return outcome
