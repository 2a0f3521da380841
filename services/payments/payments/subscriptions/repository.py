"""Every query about subscriptions, their Stripe plans, invoice payments and failures."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Table, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from kit.db import insert_ignoring_conflicts
from payments.models import (
    INVOICE,
    Card,
    Customer,
    InvoiceFailure,
    Order,
    Payment,
    StripePlan,
    Subscription,
)


class SubscriptionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @property
    def dialect(self) -> str:
        return str(self.session.get_bind().dialect.name)

    async def claim(self, row: Subscription | StripePlan) -> bool:
        """Insert ``row``; False when its unique key exists already."""
        try:
            async with self.session.begin_nested():
                self.session.add(row)
                await self.session.flush()
        except IntegrityError:
            return False
        return True

    # -- plans ----------------------------------------------------------------------------

    async def plan(
        self,
        business_id: uuid.UUID,
        offering_version_id: uuid.UUID,
        amount_minor: int,
        currency: str,
        interval: str,
        interval_count: int,
    ) -> StripePlan | None:
        query = select(StripePlan).where(
            StripePlan.business_id == business_id,
            StripePlan.offering_version_id == offering_version_id,
            StripePlan.amount_minor == amount_minor,
            StripePlan.currency == currency,
            StripePlan.interval == interval,
            StripePlan.interval_count == interval_count,
        )
        return (await self.session.execute(query)).scalar_one_or_none()

    # -- subscriptions ----------------------------------------------------------------------

    async def of_order(self, order_id: uuid.UUID) -> Subscription | None:
        query = select(Subscription).where(Subscription.order_id == order_id)
        return (await self.session.execute(query)).scalar_one_or_none()

    async def get(self, subscription_id: uuid.UUID) -> Subscription | None:
        return await self.session.get(Subscription, subscription_id)

    async def order_id_of_stripe(self, stripe_subscription_id: str) -> uuid.UUID | None:
        query = select(Subscription.order_id).where(
            Subscription.stripe_subscription_id == stripe_subscription_id
        )
        return (await self.session.execute(query)).scalar_one_or_none()

    async def lock_of_order(self, order_id: uuid.UUID) -> Subscription | None:
        """The order's subscription, locked (take the order's lock first)."""
        query = (
            select(Subscription)
            .where(Subscription.order_id == order_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return (await self.session.execute(query)).scalar_one_or_none()

    @staticmethod
    def _buyer(account_id: uuid.UUID, email: str | None) -> Any:
        """Customer rows of one buyer: bought logged in (the account), or logged out with
        the account's email (the account was made from that purchase and claimed)."""
        if not email:
            return Customer.account_id == account_id
        return or_(Customer.account_id == account_id, Customer.email == email.strip().lower())

    async def of_account(
        self, account_id: uuid.UUID, email: str | None
    ) -> Sequence[tuple[Subscription, Order, Card | None]]:
        """A buyer's subscriptions in every business, newest first."""
        query = (
            select(Subscription, Order, Card)
            .join(Order, Order.id == Subscription.order_id)
            .join(Customer, Customer.id == Subscription.customer_id)
            .outerjoin(Card, Card.id == Subscription.card_id)
            .where(self._buyer(account_id, email), Subscription.stripe_subscription_id.is_not(None))
            .order_by(Subscription.created_at.desc(), Subscription.id)
        )
        return [(s, o, c) for s, o, c in (await self.session.execute(query)).all()]

    async def cards_of_account(
        self, account_id: uuid.UUID, email: str | None
    ) -> Sequence[tuple[Card, str | None]]:
        """A buyer's saved cards with the name of the business each was saved with."""
        business_name = (
            select(func.max(Order.business_name))
            .where(Order.customer_id == Card.customer_id)
            .scalar_subquery()
        )
        query = (
            select(Card, business_name)
            .join(Customer, Customer.id == Card.customer_id)
            .where(self._buyer(account_id, email))
            .order_by(Card.created_at.desc(), Card.id)
        )
        return [(c, name) for c, name in (await self.session.execute(query)).all()]

    async def card(self, card_id: uuid.UUID | None) -> Card | None:
        return None if card_id is None else await self.session.get(Card, card_id)

    async def stale_incomplete(self, created_before: Any, limit: int) -> list[uuid.UUID]:
        """Orders whose subscription's first invoice is still unsettled (reconciliation)."""
        query = (
            select(Subscription.order_id)
            .join(Order, Order.id == Subscription.order_id)
            .where(
                Subscription.status == "incomplete",
                Subscription.stripe_subscription_id.is_not(None),
                Order.status.in_(("pending", "requires_action")),
                Subscription.created_at <= created_before,
            )
            .order_by(Subscription.created_at)
            .limit(limit)
        )
        return list((await self.session.execute(query)).scalars())

    # -- invoices ---------------------------------------------------------------------------

    async def record_invoice_payment(self, values: dict[str, Any]) -> bool:
        """One payment row per paid invoice; False if this invoice was recorded already."""
        table = cast(Table, Payment.__table__)
        statement = (
            insert_ignoring_conflicts(self.dialect, table, ["stripe_invoice_id"])
            .values(id=uuid.uuid4(), kind=INVOICE, **values)
            .returning(table.c.id)
        )
        return (await self.session.execute(statement)).first() is not None

    async def invoice_paid(self, stripe_invoice_id: str) -> bool:
        query = select(Payment.id).where(Payment.stripe_invoice_id == stripe_invoice_id)
        return (await self.session.execute(query)).first() is not None

    async def record_failure(self, values: dict[str, Any]) -> bool:
        """One row per failed (invoice, attempt); False if it was recorded already."""
        table = cast(Table, InvoiceFailure.__table__)
        statement = (
            insert_ignoring_conflicts(self.dialect, table, ["stripe_invoice_id", "attempt"])
            .values(id=uuid.uuid4(), **values)
            .returning(table.c.id)
        )
        return (await self.session.execute(statement)).first() is not None
