"""Every query about stored Stripe events."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import cast

from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncSession

from kit.db import insert_ignoring_conflicts, is_postgres
from payments.models import StripeEvent


class StripeEventRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def store(self, stripe_event_id: str, type_: str, payload: str, now: datetime) -> bool:
        """Keep an event once (Stripe may send it several times); True if it was new."""
        table = cast(Table, StripeEvent.__table__)
        statement = (
            insert_ignoring_conflicts(
                str(self.session.get_bind().dialect.name),
                table,
                ["stripe_event_id"],
            )
            .values(
                id=uuid.uuid4(),
                stripe_event_id=stripe_event_id,
                type=type_,
                payload=payload,
                received_at=now,
                available_at=now,
                attempts=0,
            )
            .returning(table.c.id)
        )
        return (await self.session.execute(statement)).first() is not None

    async def claim_next(self, now: datetime) -> StripeEvent | None:
        """The oldest due unprocessed event, locked (others skip it) until commit."""
        query = (
            select(StripeEvent)
            .where(StripeEvent.processed_at.is_(None), StripeEvent.available_at <= now)
            .order_by(StripeEvent.available_at, StripeEvent.received_at)
            .limit(1)
        )
        if is_postgres(self.session):
            query = query.with_for_update(skip_locked=True)
        return (await self.session.execute(query)).scalar_one_or_none()

    async def get(self, event_id: uuid.UUID) -> StripeEvent | None:
        return await self.session.get(StripeEvent, event_id)
