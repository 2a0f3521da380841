"""Settling subscriptions and payment plans: the one place that changes their state.

Starting one (from ``pay``), refreshing it after 3-D Secure, reconciliation and the
webhooks (``invoice.*``, ``customer.subscription.*``) all come here with the order's
row locked, then the subscription's. The rules:

- One payment row per paid Stripe invoice (unique invoice id). The first paid invoice
  pays the order (``payments.order_paid.v1``); each later one is one
  ``payments.subscription_renewed.v1``.
- The status follows the newest invoice we heard of: paid → active, failed → past due
  (with one ``payments.subscription_payment_failed.v1`` per invoice attempt). News
  about an older invoice never overrides it, so deliveries out of order are harmless.
- A payment plan is completed by its last installment: the Stripe subscription is
  canceled then and there, access is kept (``subscription_ended`` with reason
  ``completed``). Otherwise the end comes from Stripe (``customer.subscription.deleted``):
  canceled at period end, or Stripe gave up collecting; access ends. Once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from kit.contracts.payments import (
    SubscriptionEndedV1,
    SubscriptionPaymentFailedV1,
    SubscriptionRenewedV1,
)
from kit.db import utcnow
from kit.logging import get_logger
from kit.messaging import Outbox
from payments.models import (
    ACTIVE,
    CANCELED,
    COMPLETED,
    ENDED_STATUSES,
    INCOMPLETE,
    OPEN_STATUSES,
    PAST_DUE,
    PAYMENT_PLAN,
    PENDING,
    REQUIRES_ACTION,
    Order,
    StripePlan,
    Subscription,
)
from payments.orders.settlement import Settlement
from payments.stripe_gateway.gateway import InvoiceInfo, StripeGateway, SubscriptionInfo
from payments.subscriptions.repository import SubscriptionRepository

log = get_logger(__name__)

FIRST_PAYMENT_FAILED = "The first payment did not go through."


# How long the update-card link of a failed-payment email works (Stripe retries for
# about three weeks; a leaked email must not open the card page for ever).
UPDATE_CARD_LINK_DAYS = 30


def subscription_token(
    secret: str, subscription_id: uuid.UUID, expires_at: datetime | None = None
) -> str:
    """The bearer capability of the update-card page (sent in the failed-payment
    email): ``<expiry as epoch seconds>.<HMAC of the subscription id and expiry>``."""
    expires = int((expires_at or utcnow() + timedelta(days=UPDATE_CARD_LINK_DAYS)).timestamp())
    message = f"payments-subscription:{subscription_id}:{expires}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return f"{expires}.{base64.urlsafe_b64encode(digest).rstrip(b'=').decode()}"


def subscription_token_valid(secret: str, subscription_id: uuid.UUID, token: str) -> bool:
    """The token is this subscription's, made with our secret, and not expired."""
    expires, _, _digest = token.partition(".")
    # isascii: str.isdigit is true for digits int() refuses ('²'); at most 11 digits, or
    # fromtimestamp overflows: either was a 500.
    if not (expires.isascii() and expires.isdigit() and len(expires) <= 11):
        return False
    if int(expires) < utcnow().timestamp():
        return False
    expected = subscription_token(
        secret, subscription_id, datetime.fromtimestamp(int(expires), UTC)
    )
    # As bytes: compare_digest refuses str with non-ASCII characters.
    return hmac.compare_digest(token.encode(), expected.encode())


def update_card_path(secret: str, subscription_id: uuid.UUID) -> str:
    token = subscription_token(secret, subscription_id)
    return f"/billing/subscriptions/{subscription_id}/card?token={token}"


def order_facts(order: Order) -> dict[str, Any]:
    """What every subscription event says of its order: the business, the offering and
    the buyer."""
    return {
        "business_id": order.business_id,
        "business_name": order.business_name,
        "order_id": order.id,
        "offering_id": order.offering_id,
        "offering_name": order.offering_name,
        "kind": order.kind,
        "details": dict(order.details),
        "billing": dict(order.billing),
        "buyer_account_id": order.buyer_account_id,
        "buyer_email": order.buyer_email,
        "buyer_name": order.buyer_name,
    }


def _newer(candidate: datetime | None, current: datetime | None) -> bool:
    """True when ``candidate`` is at least as new as ``current`` (unknown counts as new)."""
    return candidate is None or current is None or candidate >= current


@dataclass
class SubscriptionSettlement:
    session: AsyncSession
    outbox: Outbox
    stripe: StripeGateway
    secret_key: str

    def __post_init__(self) -> None:
        self.repo = SubscriptionRepository(self.session)
        self.orders = Settlement(self.session, self.outbox)

    # -- starting ---------------------------------------------------------------------------

    async def start(
        self,
        order: Order,
        payment_method_id: str,
        card_id: uuid.UUID | None,
    ) -> tuple[str, str | None]:
        """Subscribe the order's buyer and charge the first invoice; (outcome, the
        PaymentIntent's client secret when 3-D Secure is needed). A repeated call finds
        the subscription made by the first and only re-reads it."""
        assert order.customer_id is not None and order.stripe_customer_id is not None
        billing = order.billing
        now = utcnow()
        subscription = Subscription(
            id=uuid.uuid4(),
            business_id=order.business_id,
            order_id=order.id,
            customer_id=order.customer_id,
            billing_type=str(billing.get("type")),
            interval=str(billing.get("interval") or "month"),
            interval_count=int(billing.get("interval_count") or 1),
            installments_total=(
                int(billing["installments"]) if billing.get("type") == PAYMENT_PLAN else None
            ),
            installments_paid=0,
            amount_minor=order.amount_minor,
            currency=order.currency,
            status=INCOMPLETE,
            cancel_at_period_end=False,
            card_id=card_id,
            created_at=now,
            updated_at=now,
        )
        if not await self.repo.claim(subscription):
            existing = await self.repo.lock_of_order(order.id)
            if existing is None or existing.stripe_subscription_id is None:
                return "unchanged", None
            return await self.refresh(order, existing)
        plan_id = await self._plan(order, subscription)
        await self.stripe.set_default_card(order.stripe_customer_id, payment_method_id)
        info = await self.stripe.create_subscription(
            customer=order.stripe_customer_id,
            plan=plan_id,
            metadata={
                "order_id": str(order.id),
                "business_id": str(order.business_id),
                "subscription_id": str(subscription.id),
            },
            idempotency_key=f"subscription-{subscription.id}",
        )
        subscription.stripe_subscription_id = info.id
        order.payment_started_at = now
        order.updated_at = now
        await self.session.flush()  # the unique column: one Stripe subscription per order
        return await self.apply(order, subscription, info)

    async def _plan(self, order: Order, subscription: Subscription) -> str:
        """The Stripe Plan for this offering version at this price (made once)."""
        key = (
            order.business_id,
            order.offering_version_id,
            subscription.amount_minor,
            subscription.currency,
            subscription.interval,
            subscription.interval_count,
        )
        plan = await self.repo.plan(*key)
        if plan is None:
            claimed = StripePlan(
                id=uuid.uuid4(),
                business_id=order.business_id,
                offering_version_id=order.offering_version_id,
                amount_minor=subscription.amount_minor,
                currency=subscription.currency,
                interval=subscription.interval,
                interval_count=subscription.interval_count,
                created_at=utcnow(),
            )
            if await self.repo.claim(claimed):
                metadata = {
                    "business_id": str(order.business_id),
                    "offering_id": str(order.offering_id),
                    "offering_version_id": str(order.offering_version_id),
                }
                claimed.stripe_product_id = await self.stripe.create_product(
                    name=order.offering_name,
                    metadata=metadata,
                    idempotency_key=f"plan-{claimed.id}-product",
                )
                claimed.stripe_plan_id = await self.stripe.create_plan(
                    product=claimed.stripe_product_id,
                    amount=claimed.amount_minor,
                    currency=claimed.currency,
                    interval=claimed.interval,
                    interval_count=claimed.interval_count,
                    metadata=metadata,
                    idempotency_key=f"plan-{claimed.id}",
                )
                return claimed.stripe_plan_id
            plan = await self.repo.plan(*key)
        if plan is None or plan.stripe_plan_id is None:
            raise RuntimeError("the Stripe plan is being made by another request")
        return plan.stripe_plan_id

    async def refresh(self, order: Order, subscription: Subscription) -> tuple[str, str | None]:
        """Re-read the subscription from Stripe (after 3-D Secure, or reconciliation)."""
        if subscription.stripe_subscription_id is None:
            return "unchanged", None
        info = await self.stripe.subscription(subscription.stripe_subscription_id)
        return await self.apply(order, subscription, info)

    async def apply(
        self, order: Order, subscription: Subscription, info: SubscriptionInfo
    ) -> tuple[str, str | None]:
        """Bring a subscription whose first invoice may be unsettled in line with Stripe."""
        if info.current_period_end and _newer(
            info.current_period_end, subscription.current_period_end
        ):
            subscription.current_period_end = info.current_period_end
        invoice = info.latest_invoice
        if invoice is not None and invoice.status == "paid":
            return await self.invoice_paid(order, subscription, invoice), None
        if order.paid_at is not None:
            return "unchanged", None
        intent = invoice.payment_intent if invoice is not None else None
        if intent is not None:
            subscription.first_payment_intent_id = intent.id
        if intent is not None and intent.status == "requires_action":
            if order.status == PENDING:
                order.status = REQUIRES_ACTION
                order.updated_at = utcnow()
            return "requires_action", intent.client_secret
        declined = intent is not None and intent.status == "requires_payment_method"
        if declined or info.status in ("incomplete_expired", "canceled"):
            message = (intent.failure_message if intent else None) or FIRST_PAYMENT_FAILED
            return await self._first_payment_failed(order, subscription, message), None
        return "unchanged", None

    async def _first_payment_failed(
        self, order: Order, subscription: Subscription, message: str
    ) -> str:
        """The order fails and its Stripe subscription is ended, so it never charges
        later: the buyer retries with a new order."""
        if not await self.orders.failed(order, message):
            return "unchanged"
        if subscription.status not in ENDED_STATUSES:
            subscription.status = CANCELED
            subscription.end_reason = "never_started"
            subscription.ended_at = subscription.updated_at = utcnow()
            if subscription.stripe_subscription_id:
                await self.stripe.cancel_now(subscription.stripe_subscription_id)
        return "failed"

    # -- invoices ---------------------------------------------------------------------------

    async def invoice_paid(
        self, order: Order, subscription: Subscription, invoice: InvoiceInfo
    ) -> str:
        """Record a paid invoice once: the order's first payment, or a renewal."""
        if invoice.subscription != subscription.stripe_subscription_id:
            return "other_subscription"
        now = utcnow()
        recorded = await self.repo.record_invoice_payment(
            {
                "business_id": order.business_id,
                "order_id": order.id,
                "subscription_id": subscription.id,
                "amount_minor": invoice.amount_paid or invoice.amount_due,
                "currency": (invoice.currency or order.currency).upper(),
                "stripe_payment_intent_id": invoice.payment_intent_id,
                "stripe_invoice_id": invoice.id,
                "paid_at": now,
            }
        )
        if not recorded:
            return "already_paid"
        subscription.installments_paid += 1
        subscription.updated_at = now
        if invoice.period_end and _newer(invoice.period_end, subscription.current_period_end):
            subscription.current_period_end = invoice.period_end
        completed = (
            subscription.installments_total is not None
            and subscription.installments_paid >= subscription.installments_total
        )
        if subscription.status not in ENDED_STATUSES and _newer(
            invoice.created, subscription.latest_invoice_at
        ):
            subscription.latest_invoice_at = invoice.created or subscription.latest_invoice_at
            subscription.status = ACTIVE
        if completed and subscription.status not in ENDED_STATUSES:
            subscription.status = COMPLETED
        next_charge_at = (
            None
            if subscription.status in ENDED_STATUSES or subscription.cancel_at_period_end
            else subscription.current_period_end
        )
        first = order.paid_at is None
        if first:
            await self.orders.grant(
                order,
                now,
                subscription_id=subscription.id,
                next_charge_at=next_charge_at,
                installments_total=subscription.installments_total,
            )
        else:
            await self.outbox.enqueue(
                self.session,
                SubscriptionRenewedV1(
                    **order_facts(order),
                    subscription_id=subscription.id,
                    invoice_id=invoice.id,
                    offering_version_id=order.offering_version_id,
                    amount_minor=invoice.amount_paid or invoice.amount_due,
                    currency=(invoice.currency or order.currency).upper(),
                    period_start=invoice.period_start,
                    period_end=invoice.period_end,
                    next_charge_at=next_charge_at,
                    installment=subscription.installments_paid,
                    installments_total=subscription.installments_total,
                    completed=completed,
                    paid_at=now,
                ),
            )
        if subscription.status == COMPLETED and subscription.ended_at is None:
            await self._complete(order, subscription, now)
        log.info(
            "subscription_invoice_paid",
            order_id=str(order.id),
            subscription_id=str(subscription.id),
            installment=subscription.installments_paid,
        )
        return "paid" if first else "renewed"

    async def _complete(self, order: Order, subscription: Subscription, now: datetime) -> None:
        """A payment plan's last installment is in: nothing more is charged, access stays."""
        subscription.ended_at = now
        subscription.end_reason = "completed"
        if subscription.stripe_subscription_id:
            await self.stripe.cancel_now(subscription.stripe_subscription_id)
        await self._announce_end(order, subscription, "completed", now)

    async def invoice_failed(
        self,
        order: Order,
        subscription: Subscription,
        invoice: InvoiceInfo,
        message: str | None,
    ) -> str:
        """A charge failed: the first one fails the order; a later one (if it is news)
        makes the subscription past due and asks the buyer for a new card, once per
        attempt."""
        if invoice.subscription != subscription.stripe_subscription_id:
            return "other_subscription"
        if await self.repo.invoice_paid(invoice.id):
            return "stale_failure"
        if order.paid_at is None:
            if order.status not in OPEN_STATUSES:
                return "unchanged"
            return await self._first_payment_failed(
                order, subscription, message or FIRST_PAYMENT_FAILED
            )
        if subscription.status in ENDED_STATUSES:
            return "ended"
        if not _newer(invoice.created, subscription.latest_invoice_at):
            return "stale_failure"
        now = utcnow()
        amount = invoice.amount_due or subscription.amount_minor
        currency = (invoice.currency or subscription.currency).upper()
        recorded = await self.repo.record_failure(
            {
                "business_id": order.business_id,
                "order_id": order.id,
                "subscription_id": subscription.id,
                "stripe_invoice_id": invoice.id,
                "attempt": invoice.attempt_count,
                "amount_minor": amount,
                "currency": currency,
                "failure_message": message,
                "failed_at": now,
            }
        )
        if not recorded:
            return "already_failed"
        subscription.status = PAST_DUE
        subscription.latest_invoice_at = invoice.created or subscription.latest_invoice_at
        subscription.updated_at = now
        await self.outbox.enqueue(
            self.session,
            SubscriptionPaymentFailedV1(
                business_id=order.business_id,
                subscription_id=subscription.id,
                order_id=order.id,
                invoice_id=invoice.id,
                attempt=invoice.attempt_count,
                offering_name=order.offering_name,
                kind=order.kind,
                buyer_account_id=order.buyer_account_id,
                buyer_email=order.buyer_email,
                buyer_name=order.buyer_name,
                amount_minor=amount,
                currency=currency,
                failure_message=message,
                next_attempt_at=invoice.next_payment_attempt,
                update_card_path=update_card_path(self.secret_key, subscription.id),
                failed_at=now,
                business_name=order.business_name,
            ),
        )
        log.info(
            "subscription_past_due", order_id=str(order.id), subscription_id=str(subscription.id)
        )
        return "past_due"

    # -- the subscription itself ----------------------------------------------------------

    async def updated(
        self, order: Order, subscription: Subscription, info: SubscriptionInfo, at: datetime | None
    ) -> str:
        """``customer.subscription.updated``: only what invoices do not say — the period
        end (never backwards) and cancel-at-period-end (newest event wins). Active and
        past due follow the invoices; the end comes with ``deleted``."""
        if info.status in ("canceled", "incomplete_expired"):
            return await self.deleted(order, subscription, info)
        if subscription.status in ENDED_STATUSES:
            return "ended"
        if info.current_period_end and _newer(
            info.current_period_end, subscription.current_period_end
        ):
            subscription.current_period_end = info.current_period_end
        if _newer(at, subscription.stripe_updated_at):
            subscription.stripe_updated_at = at or subscription.stripe_updated_at
            subscription.cancel_at_period_end = info.cancel_at_period_end
            subscription.updated_at = utcnow()
            return "updated"
        return "stale"

    async def deleted(
        self, order: Order, subscription: Subscription, info: SubscriptionInfo
    ) -> str:
        """Stripe ended the subscription: canceled at period end, or it gave up."""
        if subscription.status in ENDED_STATUSES:
            return "already_ended"
        now = utcnow()
        if order.paid_at is None:
            subscription.status = CANCELED
            subscription.end_reason = "never_started"
            subscription.ended_at = subscription.updated_at = now
            await self.orders.failed(order, FIRST_PAYMENT_FAILED)
            return "canceled_unpaid"
        asked = subscription.cancel_at_period_end or info.cancel_at_period_end
        reason = "canceled" if asked else "payment_failed"
        subscription.status = CANCELED
        subscription.end_reason = reason
        subscription.ended_at = subscription.updated_at = now
        await self._announce_end(order, subscription, reason, now)
        log.info("subscription_ended", subscription_id=str(subscription.id), reason=reason)
        return "ended"

    async def _announce_end(
        self, order: Order, subscription: Subscription, reason: str, now: datetime
    ) -> None:
        await self.outbox.enqueue(
            self.session,
            SubscriptionEndedV1(
                **order_facts(order),
                subscription_id=subscription.id,
                reason=reason,
                revoke_access=reason != "completed",
                installments_paid=subscription.installments_paid,
                ended_at=now,
            ),
        )
