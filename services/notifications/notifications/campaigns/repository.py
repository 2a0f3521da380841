"""Every query of the campaigns domain: campaigns, and who they go to."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from notifications.models import (
    ACTIVE,
    AudienceClient,
    Campaign,
    GroupMembership,
    Unsubscribe,
)


@dataclass(frozen=True)
class AudienceMember:
    email: str
    display_name: str | None
    unsubscribed: bool


class CampaignRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # -- campaigns ------------------------------------------------------------

    async def add(self, campaign: Campaign) -> None:
        self.session.add(campaign)
        await self.session.flush()

    async def get(
        self, business_id: uuid.UUID, campaign_id: uuid.UUID, *, for_update: bool = False
    ) -> Campaign | None:
        """One of this business's campaigns; ``for_update`` locks it until the commit, so
        two sends (or a send and an edit) of one campaign happen one after the other."""
        query = select(Campaign).where(
            Campaign.business_id == business_id, Campaign.id == campaign_id
        )
        if for_update:
            query = query.with_for_update()
        result = await self.session.execute(query.execution_options(populate_existing=True))
        return result.scalar_one_or_none()

    async def page(
        self, business_id: uuid.UUID, limit: int, offset: int
    ) -> tuple[list[Campaign], int]:
        total = await self.session.execute(
            select(func.count()).select_from(Campaign).where(Campaign.business_id == business_id)
        )
        rows = await self.session.execute(
            select(Campaign)
            .where(Campaign.business_id == business_id)
            .order_by(Campaign.created_at.desc(), Campaign.id.desc())
            .limit(limit)
            .offset(offset)
        )
        return list(rows.scalars()), int(total.scalar_one())

    async def delete(self, campaign: Campaign) -> None:
        await self.session.delete(campaign)
        await self.session.flush()

    # -- the audience ---------------------------------------------------------

    def _audience_query(self, business_id: uuid.UUID, group_id: uuid.UUID | None) -> Select[Any]:
        """Active clients with an address (in the group, if one is given), each with
        whether that address unsubscribed from this business."""
        unsubscribed = Unsubscribe.email.is_not(None).label("unsubscribed")
        query = (
            select(AudienceClient.email, AudienceClient.display_name, unsubscribed)
            .select_from(AudienceClient)
            .outerjoin(
                Unsubscribe,
                and_(
                    Unsubscribe.business_id == business_id,
                    Unsubscribe.email == AudienceClient.email,
                ),
            )
            .where(
                AudienceClient.business_id == business_id,
                AudienceClient.status == ACTIVE,
                AudienceClient.email.is_not(None),
            )
        )
        if group_id is not None:
            query = query.join(
                GroupMembership,
                and_(
                    GroupMembership.business_id == business_id,
                    GroupMembership.group_id == group_id,
                    GroupMembership.client_id == AudienceClient.client_id,
                    GroupMembership.is_member.is_(True),
                ),
            )
        return query

    async def audience(
        self, business_id: uuid.UUID, group_id: uuid.UUID | None
    ) -> list[AudienceMember]:
        """Each address once (two clients sharing one address get one email)."""
        result = await self.session.execute(
            self._audience_query(business_id, group_id).order_by(
                AudienceClient.email, AudienceClient.client_id
            )
        )
        members: dict[str, AudienceMember] = {}
        for email, display_name, unsubscribed in result.all():
            members.setdefault(email, AudienceMember(email, display_name, bool(unsubscribed)))
        return list(members.values())

    async def audience_counts(
        self, business_id: uuid.UUID, group_id: uuid.UUID | None
    ) -> tuple[int, int]:
        """(addresses that would get the campaign, addresses left out as unsubscribed)."""
        audience = self._audience_query(business_id, group_id).subquery()
        result = await self.session.execute(
            select(audience.c.unsubscribed, func.count(func.distinct(audience.c.email))).group_by(
                audience.c.unsubscribed
            )
        )
        counts = {bool(unsubscribed): int(count) for unsubscribed, count in result.all()}
        return counts.get(False, 0), counts.get(True, 0)
