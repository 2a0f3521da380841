"""Every query of the unsubscribes domain."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from kit.db import insert_ignoring_conflicts
from notifications.models import KnownBusiness, Unsubscribe


class UnsubscribeRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def is_unsubscribed(self, business_id: uuid.UUID, email: str) -> bool:
        result = await self.session.execute(
            select(Unsubscribe.email).where(
                Unsubscribe.business_id == business_id, Unsubscribe.email == email
            )
        )
        return result.first() is not None

    async def add(self, business_id: uuid.UUID, email: str, at: datetime) -> None:
        """Idempotent: unsubscribing again keeps the first date."""
        dialect = str(self.session.get_bind().dialect.name)
        statement = insert_ignoring_conflicts(dialect, Unsubscribe.__table__)  # type: ignore[arg-type]
        await self.session.execute(
            statement.values(business_id=business_id, email=email, unsubscribed_at=at)
        )

    async def remove(self, business_id: uuid.UUID, email: str) -> None:
        await self.session.execute(
            delete(Unsubscribe).where(
                Unsubscribe.business_id == business_id, Unsubscribe.email == email
            )
        )

    async def business_name(self, business_id: uuid.UUID) -> str | None:
        result = await self.session.execute(
            select(KnownBusiness.name).where(KnownBusiness.business_id == business_id)
        )
        return result.scalar_one_or_none()
