"""Every query of the read model of the client book.

Writes are upserts in which the newer fact wins: each fact keeps the
``occurred_at`` of the event that set it, and an older event changes
nothing. So events applied in any order, any number of times, leave the
same rows (the same rule as the notifications audience).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import case, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from catalog.models import ACTIVE, GroupMembership, KnownBusiness, KnownClient, KnownGroup
from kit.db import newer_fact, upsert


class ReadModelRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # -- businesses -------------------------------------------------------------

    async def remember_business(
        self, business_id: uuid.UUID, name: str, slug: str, created_at: datetime
    ) -> None:
        def changes(new: Any) -> dict[str, Any]:
            return {"name": new.name, "slug": new.slug}

        await upsert(
            self.session,
            KnownBusiness.__table__,  # type: ignore[arg-type]
            {"business_id": business_id, "name": name, "slug": slug, "created_at": created_at},
            ["business_id"],
            changes,
        )

    async def business_by_slug(self, slug: str) -> KnownBusiness | None:
        result = await self.session.execute(select(KnownBusiness).where(KnownBusiness.slug == slug))
        return result.scalar_one_or_none()

    async def businesses(self, business_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, KnownBusiness]:
        if not business_ids:
            return {}
        result = await self.session.execute(
            select(KnownBusiness).where(KnownBusiness.business_id.in_(list(business_ids)))
        )
        return {b.business_id: b for b in result.scalars()}

    # -- clients ----------------------------------------------------------------

    async def client_status(
        self,
        business_id: uuid.UUID,
        client_id: uuid.UUID,
        account_id: uuid.UUID,
        status: str,
        occurred_at: datetime,
    ) -> None:
        c = KnownClient.__table__.c

        def changes(new: Any) -> dict[str, Any]:
            newer = newer_fact(c.status_at, new.status_at)
            return {
                "account_id": new.account_id,
                "status": case((newer, new.status), else_=c.status),
                "status_at": case((newer, new.status_at), else_=c.status_at),
            }

        await upsert(
            self.session,
            KnownClient.__table__,  # type: ignore[arg-type]
            {
                "business_id": business_id,
                "client_id": client_id,
                "account_id": account_id,
                "status": status,
                "status_at": occurred_at,
            },
            ["business_id", "client_id"],
            changes,
        )

    async def is_active_client(self, business_id: uuid.UUID, account_id: uuid.UUID) -> bool:
        result = await self.session.execute(
            select(KnownClient.client_id)
            .where(
                KnownClient.business_id == business_id,
                KnownClient.account_id == account_id,
                KnownClient.status == ACTIVE,
            )
            .limit(1)
        )
        return result.scalar_one_or_none() is not None

    async def businesses_of_client(self, account_id: uuid.UUID) -> list[uuid.UUID]:
        """The businesses the account is an active client of."""
        result = await self.session.execute(
            select(KnownClient.business_id)
            .where(KnownClient.account_id == account_id, KnownClient.status == ACTIVE)
            .distinct()
        )
        return list(result.scalars())

    # -- groups -----------------------------------------------------------------

    async def group_name(
        self, business_id: uuid.UUID, group_id: uuid.UUID, name: str, occurred_at: datetime
    ) -> None:
        c = KnownGroup.__table__.c

        def changes(new: Any) -> dict[str, Any]:
            newer = newer_fact(c.name_at, new.name_at)
            return {
                "name": case((newer, new.name), else_=c.name),
                "name_at": case((newer, new.name_at), else_=c.name_at),
            }

        await upsert(
            self.session,
            KnownGroup.__table__,  # type: ignore[arg-type]
            {
                "business_id": business_id,
                "group_id": group_id,
                "name": name,
                "name_at": occurred_at,
                "deleted": False,
            },
            ["business_id", "group_id"],
            changes,
        )

    async def delete_group(
        self, business_id: uuid.UUID, group_id: uuid.UUID, occurred_at: datetime
    ) -> None:
        """The group becomes a tombstone for good and its memberships end."""
        c = KnownGroup.__table__.c

        def changes(new: Any) -> dict[str, Any]:
            return {
                "deleted": True,
                "deleted_at": case((c.deleted_at.is_(None), new.deleted_at), else_=c.deleted_at),
            }

        await upsert(
            self.session,
            KnownGroup.__table__,  # type: ignore[arg-type]
            {
                "business_id": business_id,
                "group_id": group_id,
                "deleted": True,
                "deleted_at": occurred_at,
            },
            ["business_id", "group_id"],
            changes,
        )
        await self.session.execute(
            update(GroupMembership)
            .where(GroupMembership.business_id == business_id, GroupMembership.group_id == group_id)
            .values(is_member=False)
        )

    async def group(self, business_id: uuid.UUID, group_id: uuid.UUID) -> KnownGroup | None:
        result = await self.session.execute(
            select(KnownGroup).where(
                KnownGroup.business_id == business_id, KnownGroup.group_id == group_id
            )
        )
        return result.scalar_one_or_none()

    async def live_groups(self, business_id: uuid.UUID) -> list[KnownGroup]:
        """Groups that exist (named and not deleted), by name."""
        result = await self.session.execute(
            select(KnownGroup)
            .where(
                KnownGroup.business_id == business_id,
                KnownGroup.deleted.is_(False),
                KnownGroup.name.is_not(None),
            )
            .order_by(KnownGroup.name)
        )
        return list(result.scalars())

    async def live_group_ids(
        self, business_id: uuid.UUID, group_ids: Sequence[uuid.UUID]
    ) -> set[uuid.UUID]:
        if not group_ids:
            return set()
        result = await self.session.execute(
            select(KnownGroup.group_id).where(
                KnownGroup.business_id == business_id,
                KnownGroup.group_id.in_(list(group_ids)),
                KnownGroup.deleted.is_(False),
                KnownGroup.name.is_not(None),
            )
        )
        return set(result.scalars())

    # -- memberships ------------------------------------------------------------

    async def membership(
        self,
        business_id: uuid.UUID,
        group_id: uuid.UUID,
        client_id: uuid.UUID,
        account_id: uuid.UUID,
        is_member: bool,
        occurred_at: datetime,
    ) -> None:
        c = GroupMembership.__table__.c

        def changes(new: Any) -> dict[str, Any]:
            newer = newer_fact(c.changed_at, new.changed_at)
            return {
                "account_id": new.account_id,
                "is_member": case((newer, new.is_member), else_=c.is_member),
                "changed_at": case((newer, new.changed_at), else_=c.changed_at),
            }

        await upsert(
            self.session,
            GroupMembership.__table__,  # type: ignore[arg-type]
            {
                "business_id": business_id,
                "group_id": group_id,
                "client_id": client_id,
                "account_id": account_id,
                "is_member": is_member,
                "changed_at": occurred_at,
            },
            ["business_id", "group_id", "client_id"],
            changes,
        )

    async def groups_of(self, business_id: uuid.UUID, account_id: uuid.UUID) -> set[uuid.UUID]:
        """The live groups of the business the account is a member of."""
        result = await self.session.execute(
            select(GroupMembership.group_id)
            .join(
                KnownGroup,
                (KnownGroup.business_id == GroupMembership.business_id)
                & (KnownGroup.group_id == GroupMembership.group_id),
                isouter=True,
            )
            .where(
                GroupMembership.business_id == business_id,
                GroupMembership.account_id == account_id,
                GroupMembership.is_member.is_(True),
                # A group whose creation event is late still counts; a deleted one never.
                (KnownGroup.deleted.is_(None)) | (KnownGroup.deleted.is_(False)),
            )
        )
        return set(result.scalars())
