"""Every query of discount codes and their redemptions (always within one business)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from catalog.models import DiscountCode, DiscountRedemption


class DiscountRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def insert(self, code: DiscountCode) -> bool:
        """False when the business already has a live code with that key."""
        try:
            async with self.session.begin_nested():
                self.session.add(code)
        except IntegrityError:
            return False
        return True

    async def code(self, business_id: uuid.UUID, code_id: uuid.UUID) -> DiscountCode | None:
        result = await self.session.execute(
            select(DiscountCode).where(
                DiscountCode.business_id == business_id,
                DiscountCode.id == code_id,
                DiscountCode.deleted_at.is_(None),
            )
        )
        return result.scalar_one_or_none()

    async def by_key(self, business_id: uuid.UUID, code_key: str) -> DiscountCode | None:
        result = await self.session.execute(
            select(DiscountCode).where(
                DiscountCode.business_id == business_id,
                DiscountCode.code_key == code_key,
                DiscountCode.deleted_at.is_(None),
            )
        )
        return result.scalar_one_or_none()

    async def codes_with_counts(self, business_id: uuid.UUID) -> list[tuple[DiscountCode, int]]:
        counts = (
            select(DiscountRedemption.discount_code_id, func.count().label("n"))
            .where(DiscountRedemption.business_id == business_id)
            .group_by(DiscountRedemption.discount_code_id)
            .subquery()
        )
        result = await self.session.execute(
            select(DiscountCode, func.coalesce(counts.c.n, 0))
            .outerjoin(counts, counts.c.discount_code_id == DiscountCode.id)
            .where(DiscountCode.business_id == business_id, DiscountCode.deleted_at.is_(None))
            .order_by(DiscountCode.created_at, DiscountCode.id)
        )
        return [(c, int(n)) for c, n in result.all()]

    async def mark_deleted(self, code: DiscountCode, when: datetime) -> None:
        code.deleted_at = when
        await self.session.flush()

    async def redemptions(
        self, business_id: uuid.UUID, code_id: uuid.UUID, account_id: uuid.UUID | None = None
    ) -> int:
        query = select(func.count()).where(
            DiscountRedemption.business_id == business_id,
            DiscountRedemption.discount_code_id == code_id,
        )
        if account_id is not None:
            query = query.where(DiscountRedemption.account_id == account_id)
        return int((await self.session.execute(query)).scalar_one())

    async def add_redemption(self, redemption: DiscountRedemption) -> None:
        self.session.add(redemption)
        await self.session.flush()
