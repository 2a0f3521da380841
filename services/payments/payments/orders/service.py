"""Orders: create (quote, claim, Stripe customer and SetupIntent), pay, refresh, read.

Rules:
- Prices come only from the catalog's quote; a refusal is passed on and creates nothing.
- One order per (business, Idempotency-Key): the unique key is claimed before any
  Stripe call, so a repeated or concurrent request finds the first order.
- One PaymentIntent per order (idempotency key ``order-{id}``, unique column), created
  with the order's row locked: a double submit waits, then sees the first outcome.
- Who may read or pay an order: the logged-in buyer, or whoever holds its access token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from kit.auth import Principal
from kit.catalog_quotes import CatalogClient, Quote
from kit.db import utcnow
from kit.errors import Conflict, FieldError, InvalidInput, NotFound
from kit.logging import get_logger
from kit.messaging import Outbox
from kit.money import price_label
from payments.config import PaymentsSettings
from payments.models import (
    OPEN_STATUSES,
    PENDING,
    REQUIRES_ACTION,
    SUBSCRIPTION_BILLING,
    Card,
    Customer,
    Order,
)
from payments.orders import schemas
from payments.orders.repository import OrderRepository
from payments.orders.settlement import Settlement
from payments.stripe_gateway.gateway import StripeGateway
from payments.subscriptions.repository import SubscriptionRepository
from payments.subscriptions.settlement import SubscriptionSettlement

log = get_logger(__name__)

SUPPORTED_BILLING = ("free", "one_time", *SUBSCRIPTION_BILLING)


def access_token(secret: str, order_id: uuid.UUID) -> str:
    """The order's bearer capability: derived, so a replayed create gives the same one."""
    digest = hmac.new(secret.encode(), f"payments-order:{order_id}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()


def is_subscription(order: Order) -> bool:
    return order.billing.get("type") in SUBSCRIPTION_BILLING


def order_out(
    order: Order, client_secret: str | None = None, subscription_id: uuid.UUID | None = None
) -> schemas.OrderOut:
    return schemas.OrderOut(
        id=order.id,
        business_id=order.business_id,
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
        status=order.status,
        failure_reason=order.failure_reason,
        created_at=order.created_at,
        paid_at=order.paid_at,
        client_secret=client_secret if order.status == REQUIRES_ACTION else None,
        subscription_id=subscription_id,
        appointment_id=order.appointment_id,
    )


def card_out(card: Card) -> schemas.CardOut:
    return schemas.CardOut(
        id=card.id,
        brand=card.brand,
        last4=card.last4,
        exp_month=card.exp_month,
        exp_year=card.exp_year,
    )


@dataclass(frozen=True)
class Buyer:
    account_id: uuid.UUID | None
    email: str
    name: str


def buyer_of(body: schemas.OrderIn, viewer: Principal | None) -> Buyer:
    if viewer is not None and viewer.email:
        name = body.name or viewer.name or viewer.email.split("@", 1)[0]
        return Buyer(viewer.account_id, viewer.email.strip().lower(), name)
    missing = [
        FieldError(field, "required when not logged in")
        for field, value in (("name", body.name), ("email", body.email))
        if not value
    ]
    if missing:
        raise InvalidInput("; ".join(f"{e.field}: {e.message}" for e in missing), errors=missing)
    assert body.name is not None and body.email is not None
    return Buyer(None if viewer is None else viewer.account_id, body.email, body.name)


@dataclass
class OrderService:
    session: AsyncSession
    outbox: Outbox
    settings: PaymentsSettings
    stripe: StripeGateway
    catalog: CatalogClient

    def __post_init__(self) -> None:
        self.repo = OrderRepository(self.session)
        self.settlement = Settlement(self.session, self.outbox)
        self.subscriptions = SubscriptionSettlement(
            self.session, self.outbox, self.stripe, self.settings.secret_key
        )

    # -- create ------------------------------------------------------------------------

    async def create(
        self,
        body: schemas.OrderIn,
        idempotency_key: str,
        viewer: Principal | None,
        bearer: str | None,
    ) -> schemas.OrderCreated:
        buyer = buyer_of(body, viewer)
        quote = await self.catalog.quote(body.offering_id, bearer, body.discount_code)
        if quote.billing.get("type") not in SUPPORTED_BILLING:
            raise InvalidInput(
                "This offering cannot be bought.",
                errors=[FieldError("offering_id", "unknown billing")],
                reason="billing_not_supported",
            )
        existing = await self.repo.by_key(quote.business_id, idempotency_key)
        if existing is not None:
            return await self._replay(existing, body, buyer, viewer)
        if body.appointment_id is not None and quote.kind != "appointment":
            raise InvalidInput.for_field("appointment_id", "only for an appointment offering")
        order = self._new_order(quote, buyer, idempotency_key, body.appointment_id)
        if not await self.repo.claim(order):
            existing = await self.repo.by_key(quote.business_id, idempotency_key)
            if existing is None:  # the other request rolled back; let the client retry
                raise Conflict("The same order is being created; try again.")
            return await self._replay(existing, body, buyer, viewer)
        if order.amount_minor == 0:
            await self.settlement.paid(order, None)
            return self._created(order, None, [])
        customer = await self._customer(order, buyer)
        setup = await self.stripe.create_setup_intent(
            customer=str(customer.stripe_customer_id),
            metadata={"order_id": str(order.id), "business_id": str(order.business_id)},
            idempotency_key=f"order-{order.id}-setup",
            # Renewals charge the card while the buyer is away.
            usage="off_session" if is_subscription(order) else "on_session",
        )
        order.customer_id = customer.id
        order.stripe_customer_id = customer.stripe_customer_id
        order.stripe_setup_intent_id = setup.id
        cards = await self._offered_cards(customer, viewer)
        log.info("order_created", order_id=str(order.id), business_id=str(order.business_id))
        return self._created(order, setup.client_secret, cards)

    def _new_order(
        self, quote: Quote, buyer: Buyer, idempotency_key: str, appointment_id: uuid.UUID | None
    ) -> Order:
        now = utcnow()
        return Order(
            id=uuid.uuid4(),
            business_id=quote.business_id,
            business_name=quote.business_name,
            offering_id=quote.offering_id,
            offering_version_id=quote.version_id,
            offering_name=quote.name,
            kind=quote.kind,
            details=quote.details,
            billing=quote.billing,
            buyer_account_id=buyer.account_id,
            buyer_email=buyer.email,
            buyer_name=buyer.name,
            amount_minor=max(quote.total_minor, 0),
            currency=quote.currency,
            discount_code=quote.discount_code,
            discount_minor=quote.discount_minor,
            status=PENDING,
            idempotency_key=idempotency_key,
            appointment_id=appointment_id if quote.kind == "appointment" else None,
            created_at=now,
            updated_at=now,
        )

    async def _customer(self, order: Order, buyer: Buyer) -> Customer:
        """The business's Stripe Customer for this email: claimed in our table first, so
        concurrent orders of one buyer make one Stripe Customer."""
        customer = await self.repo.customer(order.business_id, buyer.email)
        if customer is None:
            claimed = Customer(
                id=uuid.uuid4(),
                business_id=order.business_id,
                account_id=buyer.account_id,
                email=buyer.email,
                created_at=utcnow(),
            )
            if await self.repo.claim(claimed):
                claimed.stripe_customer_id = await self.stripe.create_customer(
                    email=buyer.email,
                    name=buyer.name,
                    metadata={
                        "business_id": str(order.business_id),
                        "customer_id": str(claimed.id),
                    },
                    idempotency_key=f"customer-{claimed.id}",
                )
                return claimed
            customer = await self.repo.customer(order.business_id, buyer.email)
            if customer is None:
                raise Conflict("The buyer is being set up by another request; try again.")
        if customer.account_id is None and buyer.account_id is not None:
            customer.account_id = buyer.account_id
        return customer

    async def _offered_cards(
        self, customer: Customer, viewer: Principal | None
    ) -> list[schemas.CardOut]:
        if viewer is None or customer.account_id != viewer.account_id:
            return []
        return [card_out(c) for c in await self.repo.cards_of(customer.id)]

    def _created(
        self, order: Order, setup_secret: str | None, cards: list[schemas.CardOut]
    ) -> schemas.OrderCreated:
        stripe = None
        if setup_secret is not None:
            stripe = schemas.StripeSetupOut(
                publishable_key=self.stripe.publishable_key,
                client_secret=setup_secret,
                js_url=self.stripe.js_url,
            )
        return schemas.OrderCreated(
            order=order_out(order),
            stripe=stripe,
            cards=cards,
            access_token=access_token(self.settings.secret_key, order.id),
        )

    async def _replay(
        self, order: Order, body: schemas.OrderIn, buyer: Buyer, viewer: Principal | None
    ) -> schemas.OrderCreated:
        """The answer to a repeated create: the same order, never a second one."""
        if order.offering_id != body.offering_id or order.buyer_email != buyer.email:
            raise Conflict(
                "This Idempotency-Key was used for another order.", reason="idempotency_key_reused"
            )
        secret = None
        cards: list[schemas.CardOut] = []
        if order.stripe_setup_intent_id and order.status in OPEN_STATUSES:
            secret = (await self.stripe.setup_intent(order.stripe_setup_intent_id)).client_secret
            customer = (
                await self.repo.customer_by_id(order.customer_id) if order.customer_id else None
            )
            if customer is not None:
                cards = await self._offered_cards(customer, viewer)
        return self._created(order, secret, cards)

    # -- read --------------------------------------------------------------------------

    def _authorize(self, order: Order | None, viewer: Principal | None, token: str | None) -> Order:
        if order is not None:
            if viewer is not None and order.buyer_account_id == viewer.account_id:
                return order
            # As bytes: compare_digest refuses str with non-ASCII characters (a 500).
            if token and hmac.compare_digest(
                token.encode(), access_token(self.settings.secret_key, order.id).encode()
            ):
                return order
        raise NotFound("No such order.")

    async def get(
        self, order_id: uuid.UUID, viewer: Principal | None, token: str | None
    ) -> schemas.OrderOut:
        order = self._authorize(await self.repo.get(order_id), viewer, token)
        return order_out(order, subscription_id=await self._subscription_id(order))

    async def _subscription_id(self, order: Order) -> uuid.UUID | None:
        if not is_subscription(order):
            return None
        subscription = await SubscriptionRepository(self.session).of_order(order.id)
        return subscription.id if subscription is not None else None

    async def list(self, business_id: uuid.UUID, limit: int, offset: int) -> schemas.OrderList:
        items, total = await self.repo.page(business_id, limit, offset)
        return schemas.OrderList(
            items=[order_out(o) for o in items], total=total, limit=limit, offset=offset
        )

    async def mine(self, viewer: Principal, limit: int, offset: int) -> schemas.MyOrders:
        """The buyer's purchase history in every business, newest first."""
        items, total = await self.repo.of_buyer(viewer.account_id, viewer.email, limit, offset)
        return schemas.MyOrders(
            items=[
                schemas.MyOrderOut(
                    id=o.id,
                    business_id=o.business_id,
                    business_name=o.business_name or "",
                    offering_name=o.offering_name,
                    kind=o.kind,
                    amount_minor=o.amount_minor,
                    currency=o.currency,
                    # What this order charges, with its billing ("$30.00 / month").
                    price_label=price_label(o.amount_minor, o.currency, dict(o.billing)),
                    status=o.status,
                    paid_at=o.paid_at,
                    created_at=o.created_at,
                    refunded_minor=o.refunded_minor,
                )
                for o in items
            ],
            total=total,
            limit=limit,
            offset=offset,
        )

    # -- pay ---------------------------------------------------------------------------

    async def pay(
        self,
        order_id: uuid.UUID,
        body: schemas.PayIn,
        viewer: Principal | None,
        token: str | None,
    ) -> schemas.OrderOut:
        order = self._authorize(await self.repo.lock(order_id), viewer, token)
        if is_subscription(order):
            return await self._subscribe(order, body, viewer)
        if order.status != PENDING or order.stripe_payment_intent_id is not None:
            # Paid, failed, waiting for 3-D Secure, or a double submit: never a second charge.
            return await self._settle_from_stripe(order)
        if order.stripe_customer_id is None or order.customer_id is None:
            raise Conflict("This order has nothing to pay.")
        payment_method, _ = await self._card_for(order, body, viewer)
        metadata = {"order_id": str(order.id), "business_id": str(order.business_id)}
        intent = await self.stripe.create_payment_intent(
            amount=order.amount_minor,
            currency=order.currency,
            customer=order.stripe_customer_id,
            payment_method=payment_method,
            metadata=metadata,
            idempotency_key=f"order-{order.id}",
        )
        order.stripe_payment_intent_id = intent.id
        order.payment_started_at = utcnow()
        order.updated_at = order.payment_started_at
        await self.session.flush()  # the unique column: one PaymentIntent per order
        intent = await self.stripe.confirm_payment_intent(
            intent.id, idempotency_key=f"order-{order.id}-confirm"
        )
        outcome = await self.settlement.apply(order, intent)
        log.info("order_payment_confirmed", order_id=str(order.id), outcome=outcome)
        return order_out(order, intent.client_secret)

    async def _card_for(
        self, order: Order, body: schemas.PayIn, viewer: Principal | None
    ) -> tuple[str, uuid.UUID]:
        """The PaymentMethod to charge, attached to the order's Stripe customer and saved
        (brand, last 4, expiry; the same card number twice is one saved card)."""
        assert order.stripe_customer_id is not None and order.customer_id is not None
        payment_method = await self._payment_method_for(order, body.payment_method_id, viewer)
        card = await self.stripe.card(payment_method)
        if card is None:
            raise InvalidInput.for_field("payment_method_id", "not a card")
        if card.customer is None:
            await self.stripe.attach(payment_method, order.stripe_customer_id)
        elif card.customer != order.stripe_customer_id:
            raise InvalidInput.for_field("payment_method_id", "not a card of this buyer")
        card_id = await self.repo.save_card(
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
        return payment_method, card_id

    async def _subscribe(
        self, order: Order, body: schemas.PayIn, viewer: Principal | None
    ) -> schemas.OrderOut:
        """A recurring offering or payment plan: one Stripe Subscription per order, its
        first invoice charged now. A double submit re-reads the first one."""
        existing = await SubscriptionRepository(self.session).lock_of_order(order.id)
        if existing is not None or order.status != PENDING:
            return await self._settle_subscription(order)
        if order.stripe_customer_id is None or order.customer_id is None:
            raise Conflict("This order has nothing to pay.")
        payment_method, card_id = await self._card_for(order, body, viewer)
        outcome, secret = await self.subscriptions.start(order, payment_method, card_id)
        log.info("order_subscription_started", order_id=str(order.id), outcome=outcome)
        return order_out(order, secret, await self._subscription_id(order))

    async def _settle_subscription(self, order: Order) -> schemas.OrderOut:
        subscription = await SubscriptionRepository(self.session).lock_of_order(order.id)
        if subscription is None:
            return order_out(order)
        secret = None
        if order.status in OPEN_STATUSES:
            _, secret = await self.subscriptions.refresh(order, subscription)
        return order_out(order, secret, subscription.id)

    async def refresh(
        self, order_id: uuid.UUID, viewer: Principal | None, token: str | None
    ) -> schemas.OrderOut:
        """After confirmCardPayment (3-D Secure): re-read the PaymentIntent and settle."""
        order = self._authorize(await self.repo.lock(order_id), viewer, token)
        if is_subscription(order):
            return await self._settle_subscription(order)
        return await self._settle_from_stripe(order)

    async def _settle_from_stripe(self, order: Order) -> schemas.OrderOut:
        if order.status not in OPEN_STATUSES or order.stripe_payment_intent_id is None:
            return order_out(order)
        intent = await self.stripe.payment_intent(order.stripe_payment_intent_id)
        await self.settlement.apply(order, intent)
        return order_out(order, intent.client_secret)

    async def _payment_method_for(self, order: Order, given: str, viewer: Principal | None) -> str:
        """The Stripe PaymentMethod to charge: the card confirmed on this order's
        SetupIntent, or a saved card of the logged-in buyer (by our id or Stripe's)."""
        buyer_logged_in = viewer is not None and viewer.account_id == order.buyer_account_id
        try:
            card_id: uuid.UUID | None = uuid.UUID(given)
        except ValueError:
            card_id = None
        saved = (
            await self.repo.card(card_id)
            if card_id is not None
            else await self.repo.card_by_payment_method(given)
        )
        if saved is not None and buyer_logged_in and saved.customer_id == order.customer_id:
            return saved.stripe_payment_method_id
        if card_id is None and order.stripe_setup_intent_id:
            setup = await self.stripe.setup_intent(order.stripe_setup_intent_id)
            if setup.status == "succeeded" and setup.payment_method == given:
                return given
        raise InvalidInput.for_field(
            "payment_method_id", "not a card confirmed for this order or saved by this buyer"
        )
