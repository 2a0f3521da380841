"""Settling an order: the one place that marks an order paid or failed.

Pay, refresh, webhook processing and reconciliation all come here, with the
order's row locked (``OrderRepository.lock``). "Paid" is granted once: the
``payments`` row (unique per one-time order) is inserted first, and only the
writer that inserted it marks the order paid and enqueues
``payments.order_paid.v1``, in the same transaction. A failure never
un-pays: only an open order (pending, requires action) can fail.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from kit.contracts.payments import OrderPaidV1
from kit.db import utcnow
from kit.logging import get_logger
from kit.messaging import Outbox
from payments.models import (
    CANCELED,
    FAILED,
    OPEN_STATUSES,
    PAID,
    PENDING,
    REQUIRES_ACTION,
    Order,
)
from payments.orders.repository import OrderRepository
from payments.stripe_gateway.gateway import PaymentIntentInfo

log = get_logger(__name__)

GENERIC_FAILURE = "The payment did not go through."


@dataclass
class Settlement:
    session: AsyncSession
    outbox: Outbox

    def __post_init__(self) -> None:
        self.repo = OrderRepository(self.session)

    async def paid(self, order: Order, payment_intent_id: str | None) -> bool:
        """Grant the order (once). True if this call granted it."""
        now = utcnow()
        granted = await self.repo.record_payment(
            {
                "business_id": order.business_id,
                "order_id": order.id,
                "amount_minor": order.amount_minor,
                "currency": order.currency,
                "stripe_payment_intent_id": payment_intent_id,
                "paid_at": now,
            }
        )
        if not granted:
            return False
        await self.grant(order, now)
        return True

    async def grant(
        self,
        order: Order,
        now: datetime,
        *,
        subscription_id: uuid.UUID | None = None,
        next_charge_at: datetime | None = None,
        installments_total: int | None = None,
    ) -> None:
        """Mark the order paid and announce it. Callers hold the order's lock and have
        just inserted the payment row that makes this happen once."""
        order.status = PAID
        order.paid_at = now
        order.failure_reason = None
        order.updated_at = now
        await self.outbox.enqueue(
            self.session,
            OrderPaidV1(
                business_id=order.business_id,
                order_id=order.id,
                offering_id=order.offering_id,
                offering_version_id=order.offering_version_id,
                offering_name=order.offering_name,
                kind=order.kind,
                details=dict(order.details),
                billing=dict(order.billing),
                buyer_account_id=order.buyer_account_id,
                buyer_email=order.buyer_email,
                buyer_name=order.buyer_name,
                amount_minor=order.amount_minor,
                currency=order.currency,
                discount_code=order.discount_code,
                discount_minor=order.discount_minor,
                paid_at=now,
                business_name=order.business_name,
                subscription_id=subscription_id,
                next_charge_at=next_charge_at,
                installments_total=installments_total,
                appointment_id=order.appointment_id,
            ),
        )
        log.info("order_paid", order_id=str(order.id), business_id=str(order.business_id))

    async def failed(self, order: Order, reason: str | None) -> bool:
        """Fail an open order; a paid (or otherwise closed) order stays as it is."""
        if order.status not in OPEN_STATUSES or await self.repo.has_payment(order.id):
            return False
        order.status = FAILED
        order.failure_reason = (reason or GENERIC_FAILURE)[:500]
        order.updated_at = utcnow()
        # No event: the buyer is on the checkout page and sees the reason there, and no
        # service needs it yet (an event nobody binds would never leave the outbox).
        log.info("order_failed", order_id=str(order.id), business_id=str(order.business_id))
        return True

    async def apply(self, order: Order, intent: PaymentIntentInfo) -> str:
        """Bring an order in line with what Stripe says of its PaymentIntent."""
        if order.stripe_payment_intent_id != intent.id:
            return "other_payment_intent"
        if intent.status == "succeeded":
            same_currency = intent.currency.upper() == order.currency.upper()
            if intent.amount != order.amount_minor or not same_currency:
                log.error(
                    "payment_amount_mismatch",
                    order_id=str(order.id),
                    payment_intent=intent.id,
                )
                return "amount_mismatch"
            return "paid" if await self.paid(order, intent.id) else "already_paid"
        if intent.status == "requires_action":
            if order.status == PENDING:
                order.status = REQUIRES_ACTION
                order.updated_at = utcnow()
            return "requires_action"
        if intent.status == "canceled":
            if order.status in OPEN_STATUSES:
                order.status = CANCELED
                order.updated_at = utcnow()
                return "canceled"
            return "unchanged"
        if intent.status == "requires_payment_method" and intent.failure_message:
            return "failed" if await self.failed(order, intent.failure_message) else "unchanged"
        return "unchanged"  # processing, requires_confirmation: wait for news
