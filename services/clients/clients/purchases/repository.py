"""Every query of the purchases domain."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from clients.models import (
    Business,
    Credit,
    Entitlement,
    PurchaseApplied,
    SubscriptionEventApplied,
)
from kit.db import insert_ignoring_conflicts


class PurchaseRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def claim_orders(self, rows: list[dict[str, object]]) -> set[uuid.UUID]:
        """Record that orders' effects are being applied, in one statement: the order ids
        claimed now (not those applied before, nor those a concurrent delivery of the
        same order got first)."""
        if not rows:
            return set()
        statement = insert_ignoring_conflicts(
            str(self.session.get_bind().dialect.name),
            PurchaseApplied.__table__,  # type: ignore[arg-type]
            ["order_id"],
        ).returning(PurchaseApplied.__table__.c.order_id)
        return set((await self.session.execute(statement, rows)).scalars())

    async def applied(self, order_id: uuid.UUID) -> PurchaseApplied | None:
        return await self.session.get(PurchaseApplied, order_id)

    async def set_group(self, order_id: uuid.UUID, group_id: uuid.UUID) -> None:
        await self.session.execute(
            update(PurchaseApplied)
            .where(PurchaseApplied.order_id == order_id)
            .values(group_id=group_id)
        )

    async def claim_revoke(self, order_id: uuid.UUID, now: datetime) -> bool:
        """Mark the order's effects revoked; False when they already were (or never applied)."""
        result = await self.session.execute(
            update(PurchaseApplied)
            .where(PurchaseApplied.order_id == order_id, PurchaseApplied.revoked_at.is_(None))
            .values(revoked_at=now)
            .returning(PurchaseApplied.order_id)
        )
        return result.first() is not None

    async def release_group(self, order_id: uuid.UUID, now: datetime) -> uuid.UUID | None:
        """Take the group place the order made off the order, once (a refund or the end of
        its subscription, whichever comes first): its group, or None when there is none
        (left)."""
        result = await self.session.execute(
            update(PurchaseApplied)
            .where(
                PurchaseApplied.order_id == order_id,
                PurchaseApplied.group_id.is_not(None),
                PurchaseApplied.group_released_at.is_(None),
            )
            .values(group_released_at=now)
            .returning(PurchaseApplied.group_id)
        )
        return result.scalar_one_or_none()

    async def revoke_credits(self, order_id: uuid.UUID) -> None:
        await self.session.execute(
            update(Credit).where(Credit.order_id == order_id).values(remaining=0)
        )

    async def revoke_entitlements(self, order_id: uuid.UUID) -> None:
        await self.session.execute(
            update(Entitlement).where(Entitlement.order_id == order_id).values(status="revoked")
        )

    async def set_entitlement_status(
        self, order_id: uuid.UUID, status: str, *, when: tuple[str, ...]
    ) -> None:
        """Move the order's entitlement to ``status`` only from one of ``when`` (so a late
        event never brings back access a refund or an end took)."""
        await self.session.execute(
            update(Entitlement)
            .where(Entitlement.order_id == order_id, Entitlement.status.in_(when))
            .values(status=status)
        )

    # -- subscriptions ----------------------------------------------------------------

    async def claim_subscription_event(self, row: dict[str, object]) -> bool:
        """Record a subscription event's natural key; False when it was applied already."""
        statement = insert_ignoring_conflicts(
            str(self.session.get_bind().dialect.name),
            SubscriptionEventApplied.__table__,  # type: ignore[arg-type]
            ["subscription_id", "effect", "invoice_id", "attempt"],
        ).returning(SubscriptionEventApplied.__table__.c.subscription_id)
        result = await self.session.execute(statement, [row])
        return result.first() is not None

    async def subscription_event_applied(
        self, subscription_id: uuid.UUID, effect: str, invoice_id: str
    ) -> bool:
        result = await self.session.execute(
            select(SubscriptionEventApplied.subscription_id)
            .where(
                SubscriptionEventApplied.subscription_id == subscription_id,
                SubscriptionEventApplied.effect == effect,
                SubscriptionEventApplied.invoice_id == invoice_id,
            )
            .limit(1)
        )
        return result.first() is not None

    async def add_credits(self, rows: list[dict[str, object]]) -> None:
        if rows:
            await self.session.execute(insert(Credit), rows)

    async def add_entitlements(self, rows: list[dict[str, object]]) -> None:
        if rows:
            await self.session.execute(insert(Entitlement), rows)

    async def credits_of(self, account_id: uuid.UUID) -> list[tuple[Credit, Business]]:
        result = await self.session.execute(
            select(Credit, Business)
            .join(Business, Business.id == Credit.business_id)
            .where(Credit.account_id == account_id)
            .order_by(Credit.created_at.desc(), Credit.id)
        )
        return [(c, b) for c, b in result.all()]

    async def entitlements_of(
        self, account_id: uuid.UUID
    ) -> list[tuple[Entitlement, Business, str | None]]:
        """The account's entitlements, their business and their order's billing type."""
        result = await self.session.execute(
            select(Entitlement, Business, PurchaseApplied.billing_type)
            .join(Business, Business.id == Entitlement.business_id)
            .outerjoin(PurchaseApplied, PurchaseApplied.order_id == Entitlement.order_id)
            .where(Entitlement.account_id == account_id)
            .order_by(Entitlement.created_at.desc(), Entitlement.id)
        )
        return [(e, b, billing) for e, b, billing in result.all()]
