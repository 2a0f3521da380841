"""Every query of the audience read model.

Writes are upserts in which the newer fact wins: each fact keeps the
``occurred_at`` of the event that set it, and an event older than that
changes nothing. So events applied in any order, any number of times,
leave the same rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import case, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from kit.db import newer_fact, upsert
from notifications.models import AudienceClient, AudienceGroup, GroupMembership


class AudienceRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # -- clients --------------------------------------------------------------

    async def client_profile(
        self,
        *,
        business_id: uuid.UUID,
        client_id: uuid.UUID,
        account_id: uuid.UUID,
        email: str,
        display_name: str | None,
        status: str,
        occurred_at: datetime,
    ) -> None:
        """A client's address and name, and their status as of ``occurred_at``."""
        table = AudienceClient.__table__
        c = table.c  # type: ignore[attr-defined]

        def changes(new: Any) -> dict[str, Any]:
            profile_newer = newer_fact(c.profile_at, new.profile_at)
            status_newer = newer_fact(c.status_at, new.status_at)
            return {
                "account_id": new.account_id,
                "email": case((profile_newer, new.email), else_=c.email),
                "display_name": case((profile_newer, new.display_name), else_=c.display_name),
                "profile_at": case((profile_newer, new.profile_at), else_=c.profile_at),
                "status": case((status_newer, new.status), else_=c.status),
                "status_at": case((status_newer, new.status_at), else_=c.status_at),
            }

        await upsert(
            self.session,
            table,  # type: ignore[arg-type]
            {
                "business_id": business_id,
                "client_id": client_id,
                "account_id": account_id,
                "email": email,
                "display_name": display_name,
                "profile_at": occurred_at,
                "status": status,
                "status_at": occurred_at,
            },
            ["business_id", "client_id"],
            changes,
        )

    async def client_status(
        self,
        *,
        business_id: uuid.UUID,
        client_id: uuid.UUID,
        account_id: uuid.UUID,
        status: str,
        occurred_at: datetime,
    ) -> None:
        """A status change; for a client not known yet, a row without an address."""
        table = AudienceClient.__table__
        c = table.c  # type: ignore[attr-defined]

        def changes(new: Any) -> dict[str, Any]:
            status_newer = newer_fact(c.status_at, new.status_at)
            return {
                "status": case((status_newer, new.status), else_=c.status),
                "status_at": case((status_newer, new.status_at), else_=c.status_at),
            }

        await upsert(
            self.session,
            table,  # type: ignore[arg-type]
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

    # -- groups ---------------------------------------------------------------

    async def group_name(
        self, business_id: uuid.UUID, group_id: uuid.UUID, name: str, occurred_at: datetime
    ) -> None:
        """Created or renamed: the newest name wins; a deleted group stays deleted."""
        table = AudienceGroup.__table__
        c = table.c  # type: ignore[attr-defined]

        def changes(new: Any) -> dict[str, Any]:
            newer = newer_fact(c.name_at, new.name_at)
            return {
                "name": case((newer, new.name), else_=c.name),
                "name_at": case((newer, new.name_at), else_=c.name_at),
            }

        await upsert(
            self.session,
            table,  # type: ignore[arg-type]
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
        """The group becomes a tombstone (for good) and its memberships end."""
        table = AudienceGroup.__table__
        c = table.c  # type: ignore[attr-defined]

        def changes(new: Any) -> dict[str, Any]:
            return {
                "deleted": True,
                "deleted_at": case((c.deleted_at.is_(None), new.deleted_at), else_=c.deleted_at),
            }

        await upsert(
            self.session,
            table,  # type: ignore[arg-type]
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
            delete(GroupMembership).where(
                GroupMembership.business_id == business_id,
                GroupMembership.group_id == group_id,
            )
        )

    async def group(self, business_id: uuid.UUID, group_id: uuid.UUID) -> AudienceGroup | None:
        result = await self.session.execute(
            select(AudienceGroup).where(
                AudienceGroup.business_id == business_id, AudienceGroup.group_id == group_id
            )
        )
        return result.scalar_one_or_none()

    async def groups(
        self, business_id: uuid.UUID, group_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, AudienceGroup]:
        if not group_ids:
            return {}
        result = await self.session.execute(
            select(AudienceGroup).where(
                AudienceGroup.business_id == business_id,
                AudienceGroup.group_id.in_(list(group_ids)),
            )
        )
        return {group.group_id: group for group in result.scalars()}

    # -- memberships ----------------------------------------------------------

    async def membership(
        self,
        business_id: uuid.UUID,
        group_id: uuid.UUID,
        client_id: uuid.UUID,
        is_member: bool,
        occurred_at: datetime,
    ) -> None:
        """Added or removed as of ``occurred_at``; a removal stays as a tombstone, so a
        late "added" that happened before it cannot bring the membership back."""
        table = GroupMembership.__table__
        c = table.c  # type: ignore[attr-defined]

        def changes(new: Any) -> dict[str, Any]:
            newer = newer_fact(c.changed_at, new.changed_at)
            return {
                "is_member": case((newer, new.is_member), else_=c.is_member),
                "changed_at": case((newer, new.changed_at), else_=c.changed_at),
            }

        await upsert(
            self.session,
            table,  # type: ignore[arg-type]
            {
                "business_id": business_id,
                "group_id": group_id,
                "client_id": client_id,
                "is_member": is_member,
                "changed_at": occurred_at,
            },
            ["business_id", "group_id", "client_id"],
            changes,
        )
