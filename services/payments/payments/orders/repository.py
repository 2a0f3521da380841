"""Every query about orders, customers, cards and payments."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, and_, func, or_, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from kit.db import insert_ignoring_conflicts
from payments.models import ONE_TIME, OPEN_STATUSES, Card, Customer, Order, Payment


class OrderRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @property
    def dialect(self) -> str:
        return str(self.session.get_bind().dialect.name)

    async def claim(self, row: Order | Customer | Card) -> bool:
        """Insert ``row``; False when a unique key says it exists already (the other
        writer's row is visible once it committed: read it again)."""
        try:
            async with self.session.begin_nested():
                self.session.add(row)
                await self.session.flush()
        except IntegrityError:
            return False
        return True

    # -- orders ---------------------------------------------------------------------

    async def by_key(self, business_id: uuid.UUID, key: str) -> Order | None:
        query = select(Order).where(Order.business_id == business_id, Order.idempotency_key == key)
        return (await self.session.execute(query)).scalar_one_or_none()

    async def get(self, order_id: uuid.UUID) -> Order | None:
        return await self.session.get(Order, order_id)

    async def lock(self, order_id: uuid.UUID) -> Order | None:
        """The order, its row locked until the transaction ends (fresh from the database).

        Every path that changes an order's payment state takes this lock first, so
        pay, refresh, webhooks and reconciliation never interleave on one order.
        """
        query = (
            select(Order)
            .where(Order.id == order_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return (await self.session.execute(query)).scalar_one_or_none()

    async def lock_by_payment_intent(self, payment_intent_id: str) -> Order | None:
        query = (
            select(Order)
            .where(Order.stripe_payment_intent_id == payment_intent_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return (await self.session.execute(query)).scalar_one_or_none()

    async def page(
        self, business_id: uuid.UUID, limit: int, offset: int
    ) -> tuple[Sequence[Order], int]:
        base = select(Order).where(Order.business_id == business_id)
        total = (
            await self.session.execute(select(func.count()).select_from(base.subquery()))
        ).scalar_one()
        rows = await self.session.execute(
            base.order_by(Order.created_at.desc(), Order.id.desc()).limit(limit).offset(offset)
        )
        return rows.scalars().all(), int(total)

    async def of_buyer(
        self, account_id: uuid.UUID, email: str | None, limit: int, offset: int
    ) -> tuple[Sequence[Order], int]:
        """A buyer's paid (and refunded) orders in every business, newest first: bought
        logged in (the account), or logged out with the account's email (the account was
        made from that purchase and claimed), as ``SubscriptionRepository._buyer`` matches
        customers. Orders never paid (abandoned, failed) are not purchases."""
        buyer = Order.buyer_account_id == account_id
        if email:
            logged_out = and_(
                Order.buyer_account_id.is_(None), Order.buyer_email == email.strip().lower()
            )
            buyer = or_(buyer, logged_out)
        base = select(Order).where(buyer, Order.paid_at.is_not(None))
        total = (
            await self.session.execute(select(func.count()).select_from(base.subquery()))
        ).scalar_one()
        rows = await self.session.execute(
            base.order_by(Order.paid_at.desc(), Order.id.desc()).limit(limit).offset(offset)
        )
        return rows.scalars().all(), int(total)

    async def stale_open_payments(self, started_before: datetime, limit: int) -> list[uuid.UUID]:
        query = (
            select(Order.id)
            .where(
                Order.status.in_(OPEN_STATUSES),
                Order.stripe_payment_intent_id.is_not(None),
                Order.payment_started_at <= started_before,
            )
            .order_by(Order.payment_started_at)
            .limit(limit)
        )
        return list((await self.session.execute(query)).scalars())

    # -- customers and cards ------------------------------------------------------------

    async def customer(self, business_id: uuid.UUID, email: str) -> Customer | None:
        query = select(Customer).where(Customer.business_id == business_id, Customer.email == email)
        return (await self.session.execute(query)).scalar_one_or_none()

    async def customer_by_id(self, customer_id: uuid.UUID) -> Customer | None:
        return await self.session.get(Customer, customer_id)

    async def cards_of(self, customer_id: uuid.UUID) -> Sequence[Card]:
        query = (
            select(Card)
            .where(Card.customer_id == customer_id)
            .order_by(Card.created_at.desc(), Card.id)
        )
        return (await self.session.execute(query)).scalars().all()

    async def card(self, card_id: uuid.UUID) -> Card | None:
        return await self.session.get(Card, card_id)

    async def card_by_payment_method(self, payment_method_id: str) -> Card | None:
        query = select(Card).where(Card.stripe_payment_method_id == payment_method_id)
        return (await self.session.execute(query)).scalar_one_or_none()

    async def save_card(self, values: dict[str, Any]) -> uuid.UUID:
        """Keep a card (once per PaymentMethod, and once per card number of a buyer: a
        card given again replaces the older PaymentMethod on the same row); its id."""
        known = await self.card_by_payment_method(values["stripe_payment_method_id"])
        if known is not None:
            return known.id
        fingerprint = values.get("fingerprint")
        for _ in range(2):
            if fingerprint:
                query = select(Card).where(
                    Card.customer_id == values["customer_id"], Card.fingerprint == fingerprint
                )
                same = (await self.session.execute(query)).scalar_one_or_none()
                if same is not None:
                    same.stripe_payment_method_id = values["stripe_payment_method_id"]
                    same.exp_month, same.exp_year = values["exp_month"], values["exp_year"]
                    await self.session.flush()
                    return same.id
            card = Card(id=uuid.uuid4(), **values)
            if await self.claim(card):
                return card.id
            known = await self.card_by_payment_method(values["stripe_payment_method_id"])
            if known is not None:
                return known.id
        raise IntegrityError("save_card", None, Exception("card changed concurrently"))

    # -- payments ---------------------------------------------------------------------

    async def record_payment(self, values: dict[str, Any]) -> bool:
        """Insert the one-time payment of an order; False if the order already has it."""
        table = cast(Table, Payment.__table__)
        statement = (
            insert_ignoring_conflicts(
                self.dialect, table, ["order_id"], index_where=text("kind = 'one_time'")
            )
            .values(id=uuid.uuid4(), kind=ONE_TIME, **values)
            .returning(table.c.id)
        )
        return (await self.session.execute(statement)).first() is not None

    async def charged_payment_intent(self, order_id: uuid.UUID) -> str | None:
        """The PaymentIntent that paid the order: its own, or its first invoice's."""
        query = (
            select(Payment.stripe_payment_intent_id)
            .where(Payment.order_id == order_id, Payment.stripe_payment_intent_id.is_not(None))
            .order_by(Payment.paid_at, Payment.id)
            .limit(1)
        )
        return (await self.session.execute(query)).scalar_one_or_none()

    async def order_id_of_payment_intent(self, payment_intent_id: str) -> uuid.UUID | None:
        query = select(Payment.order_id).where(
            Payment.stripe_payment_intent_id == payment_intent_id
        )
        return (await self.session.execute(query.limit(1))).scalar_one_or_none()

    async def has_payment(self, order_id: uuid.UUID) -> bool:
        query = select(func.count()).select_from(Payment).where(Payment.order_id == order_id)
        return int((await self.session.execute(query)).scalar_one()) > 0
