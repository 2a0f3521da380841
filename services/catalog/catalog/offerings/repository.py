"""Every query of offerings and their versions (always within one business)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from catalog.models import Offering, OfferingVersion


class OfferingRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, *rows: Offering | OfferingVersion) -> None:
        self.session.add_all(rows)

    async def flush(self) -> None:
        await self.session.flush()

    async def offering(
        self, business_id: uuid.UUID, offering_id: uuid.UUID, *, lock: bool = False
    ) -> tuple[Offering, OfferingVersion] | None:
        query = (
            select(Offering, OfferingVersion)
            .join(OfferingVersion, OfferingVersion.id == Offering.current_version_id)
            .where(Offering.business_id == business_id, Offering.id == offering_id)
        )
        if lock:
            query = query.with_for_update(of=Offering)
        row = (await self.session.execute(query)).first()
        return (row[0], row[1]) if row else None

    async def offering_anywhere(
        self, offering_id: uuid.UUID
    ) -> tuple[Offering, OfferingVersion] | None:
        """An offering by id alone (a quote names only the offering); the caller takes
        the business from the row and checks everything else against it."""
        row = (
            await self.session.execute(
                select(Offering, OfferingVersion)
                .join(OfferingVersion, OfferingVersion.id == Offering.current_version_id)
                .where(Offering.id == offering_id)
            )
        ).first()
        return (row[0], row[1]) if row else None

    async def offerings(
        self,
        business_id: uuid.UUID,
        *,
        statuses: Sequence[str] | None = None,
        visibilities: Sequence[str] | None = None,
        ids: Sequence[uuid.UUID] | None = None,
    ) -> list[tuple[Offering, OfferingVersion]]:
        query = (
            select(Offering, OfferingVersion)
            .join(OfferingVersion, OfferingVersion.id == Offering.current_version_id)
            .where(Offering.business_id == business_id)
            .order_by(Offering.created_at, Offering.id)
        )
        if statuses is not None:
            query = query.where(Offering.status.in_(list(statuses)))
        if visibilities is not None:
            query = query.where(OfferingVersion.visibility.in_(list(visibilities)))
        if ids is not None:
            if not ids:
                return []
            query = query.where(Offering.id.in_(list(ids)))
        return [(o, v) for o, v in (await self.session.execute(query)).all()]

    async def existing_ids(
        self, business_id: uuid.UUID, offering_ids: Sequence[uuid.UUID]
    ) -> set[uuid.UUID]:
        if not offering_ids:
            return set()
        result = await self.session.execute(
            select(Offering.id).where(
                Offering.business_id == business_id, Offering.id.in_(list(offering_ids))
            )
        )
        return set(result.scalars())

    async def versions(
        self, business_id: uuid.UUID, offering_id: uuid.UUID
    ) -> list[OfferingVersion]:
        result = await self.session.execute(
            select(OfferingVersion)
            .where(
                OfferingVersion.business_id == business_id,
                OfferingVersion.offering_id == offering_id,
            )
            .order_by(OfferingVersion.version.desc())
        )
        return list(result.scalars())

    async def version(
        self, business_id: uuid.UUID, version_id: uuid.UUID
    ) -> OfferingVersion | None:
        result = await self.session.execute(
            select(OfferingVersion).where(
                OfferingVersion.business_id == business_id, OfferingVersion.id == version_id
            )
        )
        return result.scalar_one_or_none()
