"""Refunds: the one function that records one, and the coach's way to make one.

Rules:
- :meth:`Refunds.record` is the only writer of a refund, reached from the coach's
  ``POST …/orders/{id}/refunds`` and from the ``charge.refunded`` webhook (a refund
  made in Stripe's dashboard), always with the order's row locked
  (``OrderRepository.lock``): it inserts the ``refunds`` row, adds to the order's
  ``refunded_minor`` (never past ``amount_minor``: also a check constraint), marks
  the order ``refunded`` once nothing is left, and enqueues
  ``payments.order_refunded.v1`` in the same transaction.
- A coach's refund is unique per (business, Idempotency-Key): the key is looked up
  after the order's lock is taken, so a repeat (even a concurrent one) answers the
  first refund and Stripe is called once. Stripe is called with the lock held and
  an idempotency key derived from ours; if it refuses, nothing is stored.
- A webhook records only what Stripe refunded beyond what we know of (its running
  ``amount_refunded`` minus our ``refunded_minor``), so a refund we made ourselves,
  or the same event twice, records nothing more.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from kit.contracts.payments import OrderRefundedV1
from kit.db import utcnow
from kit.errors import Conflict, FieldError, InvalidInput, NotFound
from kit.logging import get_logger
from kit.messaging import Outbox
from kit.money import amount
from payments.models import CANCELED, ENDED_STATUSES, PAID, REFUNDED, Order, Refund
from payments.orders.repository import OrderRepository
from payments.refunds import schemas
from payments.refunds.repository import RefundRepository
from payments.stripe_gateway.gateway import (
    PaymentProviderError,
    StripeGateway,
    charge_refunds,
)
from payments.subscriptions.repository import SubscriptionRepository

log = get_logger(__name__)

COACH, STRIPE = "coach", "stripe"
REFUNDABLE = (PAID, REFUNDED)


class OrderNotSettledYet(Exception):
    """Stripe refunded a charge of an order we have not settled paid yet: retry later."""


def refund_out(refund: Refund, order: Order) -> schemas.RefundOut:
    return schemas.RefundOut(
        id=refund.id,
        order_id=refund.order_id,
        amount_minor=refund.amount_minor,
        currency=refund.currency,
        reason=refund.reason,
        revoke_access=refund.revoke_access,
        origin=refund.origin,
        created_at=refund.created_at,
        order_status=order.status,
        order_amount_minor=order.amount_minor,
        refunded_total_minor=order.refunded_minor,
    )


@dataclass
class Refunds:
    """The one way a refund is recorded (the order's row must be locked by the caller)."""

    session: AsyncSession
    outbox: Outbox

    async def record(
        self,
        order: Order,
        amount_minor: int,
        *,
        origin: str,
        idempotency_key: str,
        revoke_access: bool = False,
        reason: str | None = None,
        stripe_refund_id: str | None = None,
        created_by: uuid.UUID | None = None,
        refund_id: uuid.UUID | None = None,
    ) -> Refund:
        remaining = order.amount_minor - order.refunded_minor
        if amount_minor <= 0 or amount_minor > remaining:
            raise ValueError(f"refund of {amount_minor} with {remaining} left")  # callers check
        now = utcnow()
        refund = Refund(
            id=refund_id or uuid.uuid4(),
            business_id=order.business_id,
            order_id=order.id,
            amount_minor=amount_minor,
            currency=order.currency,
            reason=reason,
            revoke_access=revoke_access,
            origin=origin,
            idempotency_key=idempotency_key,
            stripe_refund_id=stripe_refund_id,
            created_by=created_by,
            created_at=now,
        )
        await RefundRepository(self.session).add(refund)
        order.refunded_minor += amount_minor
        full = order.refunded_minor >= order.amount_minor
        if full:
            order.status = REFUNDED
        order.updated_at = now
        await self.outbox.enqueue(
            self.session,
            OrderRefundedV1(
                business_id=order.business_id,
                order_id=order.id,
                refund_id=refund.id,
                amount_minor=amount_minor,
                currency=order.currency,
                refunded_total_minor=order.refunded_minor,
                full=full,
                revoke_access=revoke_access,
                buyer_email=order.buyer_email,
                buyer_account_id=order.buyer_account_id,
                buyer_name=order.buyer_name,
                offering_name=order.offering_name,
                kind=order.kind,
                business_name=order.business_name,
                origin=origin,
                refunded_at=now,
            ),
        )
        log.info(
            "order_refunded",
            order_id=str(order.id),
            business_id=str(order.business_id),
            refund_id=str(refund.id),
            origin=origin,
            full=full,
        )
        return refund

    async def charge_refunded(self, charge: Any) -> str:
        """A ``charge.refunded`` webhook's charge: record what we did not know of, once."""
        info = charge_refunds(charge)
        if not info.payment_intent_id:
            return "not_ours"
        orders = OrderRepository(self.session)
        order = await orders.lock_by_payment_intent(info.payment_intent_id)
        if order is None:  # a subscription's first invoice pays its order
            order_id = await orders.order_id_of_payment_intent(info.payment_intent_id)
            order = await orders.lock(order_id) if order_id is not None else None
        if order is None:
            return "not_ours"
        if order.status not in REFUNDABLE:
            raise OrderNotSettledYet(f"order {order.id} is {order.status}")
        missing = info.amount_refunded - order.refunded_minor
        if missing <= 0:
            return "already_recorded"
        to_record = min(missing, order.amount_minor - order.refunded_minor)
        if to_record <= 0:
            return "already_recorded"
        await self.record(
            order,
            to_record,
            origin=STRIPE,
            # One per running total of the charge: the same state never records twice.
            idempotency_key=f"stripe:{info.charge_id}:{info.amount_refunded}"[:200],
        )
        return "refunded"


@dataclass
class RefundService:
    session: AsyncSession
    outbox: Outbox
    stripe: StripeGateway

    async def create(
        self,
        business_id: uuid.UUID,
        order_id: uuid.UUID,
        body: schemas.RefundIn,
        idempotency_key: str,
        coach_account_id: uuid.UUID,
    ) -> tuple[schemas.RefundOut, bool]:
        """The refund, and whether this call made it (False: the key's earlier refund)."""
        order = await OrderRepository(self.session).lock(order_id)
        if order is None or order.business_id != business_id:
            raise NotFound("No such order.")
        existing = await RefundRepository(self.session).by_key(business_id, idempotency_key)
        if existing is not None:
            if existing.order_id != order.id:
                raise Conflict(
                    "This Idempotency-Key was used for another refund.",
                    reason="idempotency_key_reused",
                )
            return refund_out(existing, order), False
        remaining = order.amount_minor - order.refunded_minor
        charged = await OrderRepository(self.session).charged_payment_intent(order.id)
        if order.status not in REFUNDABLE or not charged or remaining <= 0:
            message = (
                "This order is refunded already."
                if order.status == REFUNDED
                else "Only a paid card order can be refunded."
            )
            raise InvalidInput(
                message,
                errors=[],
                reason="already_refunded" if order.status == REFUNDED else "not_refundable",
            )
        to_refund = remaining if body.amount_minor is None else body.amount_minor
        if to_refund > remaining:
            left = amount(remaining, order.currency)
            paid = amount(order.amount_minor, order.currency)
            message = f"at most {left} ({remaining} in minor units) is left of the {paid} paid"
            raise InvalidInput(
                f"amount_minor: {message}",
                errors=[FieldError("amount_minor", message)],
                reason="refund_exceeds_paid",
            )
        refund_id = uuid.uuid4()
        reason = (body.reason or "").strip() or None
        metadata = {
            "order_id": str(order.id),
            "business_id": str(order.business_id),
            "refund_id": str(refund_id),
        }
        if reason:
            metadata["reason"] = reason[:500]
        info = await self.stripe.create_refund(
            payment_intent_id=charged,
            amount=to_refund,
            metadata=metadata,
            idempotency_key=f"refund-{order.id}-{idempotency_key}",
        )
        if info.status in ("failed", "canceled"):
            raise PaymentProviderError("Stripe did not make the refund.")
        refund = await Refunds(self.session, self.outbox).record(
            order,
            to_refund,
            origin=COACH,
            idempotency_key=idempotency_key,
            revoke_access=body.revoke_access,
            reason=reason,
            stripe_refund_id=info.id,
            created_by=coach_account_id,
            refund_id=refund_id,
        )
        if body.revoke_access and order.refunded_minor >= order.amount_minor:
            await self._stop_subscription(order)
        return refund_out(refund, order), True

    async def _stop_subscription(self, order: Order) -> None:
        """A full refund that takes access back also stops what would charge next."""
        subscription = await SubscriptionRepository(self.session).lock_of_order(order.id)
        if subscription is None or subscription.status in ENDED_STATUSES:
            return
        if subscription.stripe_subscription_id:
            await self.stripe.cancel_now(subscription.stripe_subscription_id)
        subscription.status = CANCELED
        subscription.end_reason = "refunded"
        subscription.ended_at = subscription.updated_at = utcnow()
