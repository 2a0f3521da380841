"""The buyer's side of subscriptions: billing overview, cancel at period end, new card.

Who may act: the logged-in buyer (the account the order was bought under), or for
reading and updating the card only, whoever holds the subscription's token from the
failed-payment email. Anyone else gets 404, never 403.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from kit.auth import Principal
from kit.db import utcnow
from kit.errors import Conflict, InvalidInput, NotFound
from kit.logging import get_logger
from kit.messaging import Outbox
from kit.money import price_label
from payments.config import PaymentsSettings
from payments.models import (
    ACTIVE,
    ENDED_STATUSES,
    PAST_DUE,
    RECURRING,
    Card,
    Order,
    Subscription,
)
from payments.orders.repository import OrderRepository
from payments.stripe_gateway.gateway import StripeGateway
from payments.subscriptions import schemas
from payments.subscriptions.repository import SubscriptionRepository
from payments.subscriptions.settlement import SubscriptionSettlement, subscription_token_valid

log = get_logger(__name__)


def billing_card_out(card: Card, business_name: str | None) -> schemas.BillingCardOut:
    return schemas.BillingCardOut(
        id=card.id,
        brand=card.brand,
        last4=card.last4,
        exp_month=card.exp_month,
        exp_year=card.exp_year,
        business_id=card.business_id,
        business_name=business_name,
    )


def subscription_out(
    subscription: Subscription, order: Order, card: Card | None
) -> schemas.SubscriptionOut:
    running = subscription.status in (ACTIVE, PAST_DUE)
    return schemas.SubscriptionOut(
        id=subscription.id,
        business_id=subscription.business_id,
        business_name=order.business_name,
        order_id=order.id,
        offering_id=order.offering_id,
        offering_name=order.offering_name,
        kind=order.kind,
        billing_type=subscription.billing_type,
        status=subscription.status,
        amount_minor=subscription.amount_minor,
        currency=subscription.currency,
        price_label=price_label(subscription.amount_minor, subscription.currency, order.billing),
        interval=subscription.interval,
        interval_count=subscription.interval_count,
        installments_total=subscription.installments_total,
        installments_paid=subscription.installments_paid,
        current_period_end=subscription.current_period_end,
        next_charge_at=(
            subscription.current_period_end
            if running and not subscription.cancel_at_period_end
            else None
        ),
        cancel_at_period_end=subscription.cancel_at_period_end,
        can_cancel=(
            running
            and subscription.billing_type == RECURRING
            and not subscription.cancel_at_period_end
        ),
        card=billing_card_out(card, order.business_name) if card is not None else None,
        ended_at=subscription.ended_at,
        end_reason=subscription.end_reason,
        created_at=subscription.created_at,
    )


@dataclass
class SubscriptionService:
    session: AsyncSession
    outbox: Outbox
    settings: PaymentsSettings
    stripe: StripeGateway

    def __post_init__(self) -> None:
        self.repo = SubscriptionRepository(self.session)
        self.orders = OrderRepository(self.session)
        self.settlement = SubscriptionSettlement(
            self.session, self.outbox, self.stripe, self.settings.secret_key
        )

    async def mine(self, viewer: Principal) -> schemas.MyBilling:
        rows = await self.repo.of_account(viewer.account_id, viewer.email)
        cards = [
            billing_card_out(card, business_name)
            for card, business_name in await self.repo.cards_of_account(
                viewer.account_id, viewer.email
            )
        ]
        return schemas.MyBilling(
            cards=cards, subscriptions=[subscription_out(s, o, c) for s, o, c in rows]
        )

    async def _locked(
        self,
        subscription_id: uuid.UUID,
        viewer: Principal | None,
        token: str | None,
        *,
        token_allowed: bool = True,
    ) -> tuple[Subscription, Order]:
        """The subscription and its order, both locked (order first), if the caller may
        act on it; else 404."""
        found = await self.repo.get(subscription_id)
        order = await self.orders.lock(found.order_id) if found is not None else None
        subscription = await self.repo.lock_of_order(order.id) if order is not None else None
        if subscription is None or order is None or subscription.stripe_subscription_id is None:
            raise NotFound("No such subscription.")
        if viewer is not None and order.buyer_account_id == viewer.account_id:
            return subscription, order
        if viewer is not None and await self._bought_by(order, viewer):
            return subscription, order
        if (
            token_allowed
            and token
            and subscription_token_valid(self.settings.secret_key, subscription.id, token)
        ):
            return subscription, order
        raise NotFound("No such subscription.")

    async def _bought_by(self, order: Order, viewer: Principal) -> bool:
        """A buyer who paid logged out and claimed the account later: the customer row
        carries the account once it is known."""
        if order.customer_id is None:
            return False
        customer = await self.orders.customer_by_id(order.customer_id)
        if customer is None:
            return False
        same_email = bool(viewer.email) and customer.email == viewer.email.strip().lower()
        return customer.account_id == viewer.account_id or same_email

    async def get(
        self, subscription_id: uuid.UUID, viewer: Principal | None, token: str | None
    ) -> schemas.SubscriptionOut:
        subscription, order = await self._locked(subscription_id, viewer, token)
        return subscription_out(subscription, order, await self.repo.card(subscription.card_id))

    async def cancel(
        self, subscription_id: uuid.UUID, viewer: Principal
    ) -> schemas.SubscriptionOut:
        """Cancel at the end of the paid period (Stripe ends it then). Idempotent."""
        subscription, order = await self._locked(subscription_id, viewer, None, token_allowed=False)
        card = await self.repo.card(subscription.card_id)
        if subscription.billing_type != RECURRING:
            raise Conflict(
                "A payment plan cannot be canceled: every installment is owed.",
                reason="plan_not_cancelable",
            )
        if subscription.cancel_at_period_end or subscription.status in ENDED_STATUSES:
            return subscription_out(subscription, order, card)
        assert subscription.stripe_subscription_id is not None
        info = await self.stripe.cancel_at_period_end(subscription.stripe_subscription_id)
        subscription.cancel_at_period_end = True
        if info.current_period_end:
            subscription.current_period_end = info.current_period_end
        subscription.updated_at = utcnow()
        log.info("subscription_cancel_requested", subscription_id=str(subscription.id))
        return subscription_out(subscription, order, card)

    async def card_setup(
        self, subscription_id: uuid.UUID, viewer: Principal | None, token: str | None
    ) -> schemas.CardSetupOut:
        subscription, order = await self._locked(subscription_id, viewer, token)
        if subscription.status in ENDED_STATUSES:
            raise Conflict("This subscription has ended.", reason="subscription_ended")
        assert order.stripe_customer_id is not None
        setup = await self.stripe.create_setup_intent(
            customer=order.stripe_customer_id,
            metadata={"subscription_id": str(subscription.id)},
            idempotency_key=f"subscription-{subscription.id}-setup-{uuid.uuid4()}",
            usage="off_session",
        )
        assert setup.client_secret is not None
        return schemas.CardSetupOut(
            publishable_key=self.stripe.publishable_key,
            client_secret=setup.client_secret,
            js_url=self.stripe.js_url,
        )

    async def update_card(
        self,
        subscription_id: uuid.UUID,
        body: schemas.NewCardIn,
        viewer: Principal | None,
        token: str | None,
    ) -> schemas.SubscriptionOut:
        """The new card charges this subscription from now on; a past-due invoice is
        charged again at once and settled like its webhook would."""
        subscription, order = await self._locked(subscription_id, viewer, token)
        if subscription.status in ENDED_STATUSES:
            raise Conflict("This subscription has ended.", reason="subscription_ended")
        assert order.stripe_customer_id is not None and order.customer_id is not None
        card = await self.stripe.card(body.payment_method_id)
        if card is None:
            raise InvalidInput.for_field("payment_method_id", "not a card")
        if card.customer is None:
            await self.stripe.attach(card.payment_method_id, order.stripe_customer_id)
        elif card.customer != order.stripe_customer_id:
            raise InvalidInput.for_field("payment_method_id", "not a card of this buyer")
        card_id = await self.orders.save_card(
            {
                "business_id": order.business_id,
                "customer_id": order.customer_id,
                "stripe_payment_method_id": card.payment_method_id,
                "fingerprint": card.fingerprint,
                "brand": card.brand,
                "last4": card.last4,
                "exp_month": card.exp_month,
                "exp_year": card.exp_year,
                "created_at": utcnow(),
            }
        )
        await self.stripe.set_default_card(order.stripe_customer_id, card.payment_method_id)
        subscription.card_id = card_id
        subscription.updated_at = utcnow()
        if subscription.status == PAST_DUE and subscription.stripe_subscription_id:
            current = await self.stripe.subscription(subscription.stripe_subscription_id)
            invoice = current.latest_invoice
            if invoice is not None and invoice.status == "open":
                paid = await self.stripe.pay_invoice(invoice.id)
                if paid.status == "paid":
                    await self.settlement.invoice_paid(order, subscription, paid)
        log.info("subscription_card_updated", subscription_id=str(subscription.id))
        return subscription_out(subscription, order, await self.repo.card(subscription.card_id))
