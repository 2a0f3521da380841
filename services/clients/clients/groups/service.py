"""Client groups: create, rename, delete, and change members.

Membership changes publish one event per client, so other services can keep
read models (catalog gates offerings by group; notifications targets
campaigns). Removing a member only ends the membership: nothing the client
booked or bought is touched.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from clients.book.repository import BookRepository
from clients.book.service import timeline_row
from clients.groups import schemas
from clients.groups.repository import GroupRepository
from clients.models import ClientGroup
from kit.contracts.clients import (
    GroupCreatedV1,
    GroupDeletedV1,
    GroupMemberAddedV1,
    GroupMemberRemovedV1,
    GroupRenamedV1,
)
from kit.db import utcnow
from kit.errors import Conflict, InvalidInput, NotFound
from kit.messaging import Outbox


def _out(group: ClientGroup, member_count: int) -> schemas.GroupOut:
    return schemas.GroupOut(
        id=group.id, name=group.name, member_count=member_count, created_at=group.created_at
    )


def _name_taken(name: str) -> Conflict:
    return Conflict(f"There is already a group called “{name}”.", field="name")


@dataclass
class GroupService:
    session: AsyncSession
    outbox: Outbox
    repo: GroupRepository = field(init=False)
    book: BookRepository = field(init=False)

    def __post_init__(self) -> None:
        self.repo = GroupRepository(self.session)
        self.book = BookRepository(self.session)

    async def _group(self, business_id: uuid.UUID, group_id: uuid.UUID) -> ClientGroup:
        group = await self.repo.group(business_id, group_id)
        if group is None:
            raise NotFound("No such group.")
        return group

    async def list(self, business_id: uuid.UUID) -> schemas.GroupList:
        return schemas.GroupList(
            items=[_out(g, n) for g, n in await self.repo.groups_with_counts(business_id)]
        )

    async def detail(self, business_id: uuid.UUID, group_id: uuid.UUID) -> schemas.GroupDetail:
        group = await self._group(business_id, group_id)
        members = await self.repo.members(business_id, group_id)
        return schemas.GroupDetail(
            **_out(group, len(members)).model_dump(),
            members=[
                schemas.MemberOut(id=c.id, name=a.display_name, email=a.email, status=c.status)
                for c, a in members
            ],
        )

    async def create(self, business_id: uuid.UUID, name: str) -> schemas.GroupOut:
        group = ClientGroup(
            id=uuid.uuid4(),
            business_id=business_id,
            name=name,
            name_key=name.casefold(),
            created_at=utcnow(),
        )
        if not await self.repo.insert_group(group):
            raise _name_taken(name)
        await self.outbox.enqueue(
            self.session,
            GroupCreatedV1(business_id=business_id, group_id=group.id, group_name=name),
        )
        return _out(group, 0)

    async def rename(
        self, business_id: uuid.UUID, group_id: uuid.UUID, name: str
    ) -> schemas.GroupOut:
        group = await self._group(business_id, group_id)
        if group.name != name:
            if not await self.repo.rename(group, name, name.casefold()):
                raise _name_taken(name)
            await self.outbox.enqueue(
                self.session,
                GroupRenamedV1(business_id=business_id, group_id=group.id, group_name=name),
            )
        return _out(group, await self.repo.member_count(group.id))

    async def delete(self, business_id: uuid.UUID, group_id: uuid.UUID, actor_name: str) -> None:
        group = await self._group(business_id, group_id)
        members = await self.repo.members(business_id, group_id)
        await self.book.add_timeline(
            [
                timeline_row(
                    business_id,
                    client.id,
                    "group_removed",
                    f"Left group {group.name}: the group was deleted by {actor_name}",
                )
                for client, _ in members
            ]
        )
        await self.repo.delete_group(group)
        await self.outbox.enqueue(
            self.session, GroupDeletedV1(business_id=business_id, group_id=group_id)
        )

    async def add_members(
        self,
        business_id: uuid.UUID,
        group_id: uuid.UUID,
        client_ids: list[uuid.UUID],
        actor_name: str,
    ) -> schemas.MembershipChange:
        group = await self._group(business_id, group_id)
        await self.repo.lock_group(group.id)
        wanted = list(dict.fromkeys(client_ids))
        clients = await self.book.clients_by_ids(business_id, wanted)
        unknown = [str(cid) for cid in wanted if cid not in clients]
        if unknown:
            raise InvalidInput.for_field(
                "client_ids", f"not clients of this business: {', '.join(unknown[:10])}"
            )
        already = await self.repo.member_ids(group.id, wanted)
        new = [cid for cid in wanted if cid not in already]
        now = utcnow()
        await self.repo.add_members(
            [
                {
                    "group_id": group.id,
                    "client_id": cid,
                    "business_id": business_id,
                    "added_at": now,
                }
                for cid in new
            ]
        )
        await self.book.add_timeline(
            [
                timeline_row(
                    business_id,
                    cid,
                    "group_added",
                    f"Added to group {group.name} by {actor_name}",
                    now,
                )
                for cid in new
            ]
        )
        await self.outbox.enqueue_many(
            self.session,
            [
                GroupMemberAddedV1(
                    business_id=business_id,
                    group_id=group.id,
                    client_id=cid,
                    account_id=clients[cid].account.id,
                )
                for cid in new
            ],
        )
        return schemas.MembershipChange(
            group=_out(group, await self.repo.member_count(group.id)), changed=len(new)
        )

    async def remove_members(
        self,
        business_id: uuid.UUID,
        group_id: uuid.UUID,
        client_ids: list[uuid.UUID],
        actor_name: str,
    ) -> schemas.MembershipChange:
        group = await self._group(business_id, group_id)
        await self.repo.lock_group(group.id)
        wanted = list(dict.fromkeys(client_ids))
        members = await self.repo.member_ids(group.id, wanted)
        gone = [cid for cid in wanted if cid in members]
        clients = await self.book.clients_by_ids(business_id, gone)
        await self.repo.remove_members(group.id, gone)
        await self.book.add_timeline(
            [
                timeline_row(
                    business_id,
                    cid,
                    "group_removed",
                    f"Removed from group {group.name} by {actor_name}",
                )
                for cid in gone
            ]
        )
        await self.outbox.enqueue_many(
            self.session,
            [
                GroupMemberRemovedV1(
                    business_id=business_id,
                    group_id=group.id,
                    client_id=cid,
                    account_id=clients[cid].account.id,
                )
                for cid in gone
            ],
        )
        return schemas.MembershipChange(
            group=_out(group, await self.repo.member_count(group.id)), changed=len(gone)
        )
