"""Every query about refunds."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from payments.models import Refund


class RefundRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def by_key(self, business_id: uuid.UUID, key: str) -> Refund | None:
        query = select(Refund).where(
            Refund.business_id == business_id, Refund.idempotency_key == key
        )
        return (await self.session.execute(query)).scalar_one_or_none()

    async def add(self, refund: Refund) -> None:
        self.session.add(refund)
        await self.session.flush()
