"""Every query of collections (always within one business)."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from catalog.models import Collection


class CollectionRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, collection: Collection) -> None:
        self.session.add(collection)
        await self.session.flush()

    async def flush(self) -> None:
        await self.session.flush()

    async def delete(self, collection: Collection) -> None:
        await self.session.delete(collection)
        await self.session.flush()

    async def collection(
        self, business_id: uuid.UUID, collection_id: uuid.UUID, *, lock: bool = False
    ) -> Collection | None:
        query = select(Collection).where(
            Collection.business_id == business_id, Collection.id == collection_id
        )
        if lock:
            query = query.with_for_update()
        return (await self.session.execute(query)).scalar_one_or_none()

    async def collections(
        self, business_id: uuid.UUID, *, in_app: bool | None = None
    ) -> list[Collection]:
        query = (
            select(Collection)
            .where(Collection.business_id == business_id)
            .order_by(Collection.created_at, Collection.id)
        )
        if in_app is not None:
            query = query.where(Collection.in_app.is_(in_app))
        return list((await self.session.execute(query)).scalars())

    async def in_app_collections(self, business_ids: list[uuid.UUID]) -> list[Collection]:
        if not business_ids:
            return []
        result = await self.session.execute(
            select(Collection)
            .where(Collection.business_id.in_(business_ids), Collection.in_app.is_(True))
            .order_by(Collection.created_at, Collection.id)
        )
        return list(result.scalars())
