"""Every query of client groups and memberships."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import delete, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from clients.models import Account, Client, ClientGroup, GroupMembership


class GroupRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def group(self, business_id: uuid.UUID, group_id: uuid.UUID) -> ClientGroup | None:
        result = await self.session.execute(
            select(ClientGroup).where(
                ClientGroup.business_id == business_id, ClientGroup.id == group_id
            )
        )
        return result.scalar_one_or_none()

    async def insert_group(self, group: ClientGroup) -> bool:
        """False when the business already has a group of that name."""
        try:
            async with self.session.begin_nested():
                self.session.add(group)
        except IntegrityError:
            return False
        return True

    async def rename(self, group: ClientGroup, name: str, name_key: str) -> bool:
        try:
            async with self.session.begin_nested():
                group.name, group.name_key = name, name_key
                await self.session.flush()
        except IntegrityError:
            return False
        return True

    async def delete_group(self, group: ClientGroup) -> None:
        await self.session.execute(
            delete(GroupMembership).where(GroupMembership.group_id == group.id)
        )
        await self.session.delete(group)
        await self.session.flush()

    async def groups_with_counts(self, business_id: uuid.UUID) -> list[tuple[ClientGroup, int]]:
        counts = (
            select(GroupMembership.group_id, func.count().label("n"))
            .where(GroupMembership.business_id == business_id)
            .group_by(GroupMembership.group_id)
            .subquery()
        )
        result = await self.session.execute(
            select(ClientGroup, func.coalesce(counts.c.n, 0))
            .outerjoin(counts, counts.c.group_id == ClientGroup.id)
            .where(ClientGroup.business_id == business_id)
            .order_by(func.lower(ClientGroup.name))
        )
        return [(g, int(n)) for g, n in result.all()]

    async def member_count(self, group_id: uuid.UUID) -> int:
        result = await self.session.execute(
            select(func.count()).where(GroupMembership.group_id == group_id)
        )
        return int(result.scalar_one())

    async def members(
        self, business_id: uuid.UUID, group_id: uuid.UUID
    ) -> list[tuple[Client, Account]]:
        result = await self.session.execute(
            select(Client, Account)
            .join(GroupMembership, GroupMembership.client_id == Client.id)
            .join(Account, Account.id == Client.account_id)
            .where(GroupMembership.business_id == business_id, GroupMembership.group_id == group_id)
            .order_by(func.lower(Account.display_name))
        )
        return [(c, a) for c, a in result.all()]

    async def member_ids(
        self, group_id: uuid.UUID, client_ids: Sequence[uuid.UUID]
    ) -> set[uuid.UUID]:
        result = await self.session.execute(
            select(GroupMembership.client_id).where(
                GroupMembership.group_id == group_id, GroupMembership.client_id.in_(client_ids)
            )
        )
        return set(result.scalars())

    async def add_members(self, rows: list[dict[str, object]]) -> None:
        if rows:
            await self.session.execute(insert(GroupMembership), rows)

    async def remove_members(self, group_id: uuid.UUID, client_ids: Sequence[uuid.UUID]) -> None:
        await self.session.execute(
            delete(GroupMembership).where(
                GroupMembership.group_id == group_id, GroupMembership.client_id.in_(client_ids)
            )
        )

    async def lock_group(self, group_id: uuid.UUID) -> None:
        """Serialise membership changes of one group (concurrent adds of one client)."""
        await self.session.execute(
            select(ClientGroup.id).where(ClientGroup.id == group_id).with_for_update()
        )
