"""Who may see and buy an offering: :func:`refusal` is the one rule.

- public and unlisted: anyone (unlisted ones are only left out of lists);
- established_only: an active client of the business;
- groups: an active client who is a member of at least one of its groups;
- drafts and archived offerings: nobody (a coach previews through the coach API).

A viewer's :class:`Standing` towards a business comes from the read model of
the client book, which :class:`ReadModelService` keeps from the clients
service's events (late, repeated or out of order: the newest fact wins).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from catalog.eligibility import schemas
from catalog.eligibility.repository import ReadModelRepository
from catalog.models import ACTIVE, PUBLISHED
from kit.auth import Principal
from kit.contracts.base import Event
from kit.contracts.clients import (
    BusinessCreatedV1,
    ClientAddedV1,
    ClientArchivedV1,
    ClientRestoredV1,
    GroupCreatedV1,
    GroupDeletedV1,
    GroupMemberAddedV1,
    GroupMemberRemovedV1,
    GroupRenamedV1,
)
from kit.logging import get_logger

log = get_logger(__name__)

# Why a viewer may not see or buy an offering (the ``reason`` of refusals).
NOT_FOUND = "not_found"
NOT_PUBLISHED = "not_published"
LOGIN_REQUIRED = "login_required"
NOT_A_CLIENT = "not_a_client"
NOT_IN_GROUP = "not_in_group"
SOLD_OUT = "sold_out"


@dataclass(frozen=True)
class Standing:
    """Who is looking, as seen by one business."""

    account_id: uuid.UUID | None = None
    is_client: bool = False
    group_ids: frozenset[uuid.UUID] = frozenset()

    @property
    def anonymous(self) -> bool:
        return self.account_id is None


ANONYMOUS = Standing()


def refusal(
    status: str, visibility: str, group_ids: Iterable[uuid.UUID | str], viewer: Standing
) -> str | None:
    """None when ``viewer`` may see (and so buy) the offering, else the reason why not."""
    if status != PUBLISHED:
        return NOT_PUBLISHED
    if visibility in ("public", "unlisted"):
        return None
    if viewer.anonymous:
        return LOGIN_REQUIRED
    if not viewer.is_client:
        return NOT_A_CLIENT
    if visibility == "established_only":
        return None
    if visibility == "groups":
        wanted = {uuid.UUID(str(g)) for g in group_ids}
        return None if wanted & viewer.group_ids else NOT_IN_GROUP
    return NOT_PUBLISHED  # an unknown visibility shows to nobody


@dataclass
class Eligibility:
    """Reads the viewer's standing and the business's groups from the read model."""

    session: AsyncSession
    repo: ReadModelRepository = field(init=False)

    def __post_init__(self) -> None:
        self.repo = ReadModelRepository(self.session)

    async def standing(self, business_id: uuid.UUID, viewer: Principal | None) -> Standing:
        if viewer is None:
            return ANONYMOUS
        account_id = viewer.account_id
        if not await self.repo.is_active_client(business_id, account_id):
            return Standing(account_id=account_id)
        groups = await self.repo.groups_of(business_id, account_id)
        return Standing(account_id=account_id, is_client=True, group_ids=frozenset(groups))

    async def groups(self, business_id: uuid.UUID) -> schemas.GroupList:
        return schemas.GroupList(
            items=[
                schemas.GroupOut(id=g.group_id, name=g.name or "")
                for g in await self.repo.live_groups(business_id)
            ]
        )

    async def unknown_groups(
        self, business_id: uuid.UUID, group_ids: Iterable[uuid.UUID]
    ) -> list[uuid.UUID]:
        """Those of ``group_ids`` that are not live groups of the business."""
        wanted = list(dict.fromkeys(group_ids))
        known = await self.repo.live_group_ids(business_id, wanted)
        return [g for g in wanted if g not in known]


def _business(event: Event) -> uuid.UUID | None:
    if event.business_id is None:
        log.error("client_book_event_without_business_id", event_name=event.name)
    return event.business_id


@dataclass
class ReadModelService:
    """The clients service's events applied to the read model (handlers only write rows)."""

    session: AsyncSession
    repo: ReadModelRepository = field(init=False)

    def __post_init__(self) -> None:
        self.repo = ReadModelRepository(self.session)

    async def business_created(self, event: BusinessCreatedV1) -> None:
        if (business_id := _business(event)) is None:
            return
        await self.repo.remember_business(
            business_id, event.business_name, event.slug, event.occurred_at
        )

    async def client_added(self, event: ClientAddedV1) -> None:
        await self._client(event, ACTIVE)

    async def client_archived(self, event: ClientArchivedV1) -> None:
        await self._client(event, "archived")

    async def client_restored(self, event: ClientRestoredV1) -> None:
        await self._client(event, ACTIVE)

    async def _client(
        self, event: ClientAddedV1 | ClientArchivedV1 | ClientRestoredV1, status: str
    ) -> None:
        if (business_id := _business(event)) is None:
            return
        await self.repo.client_status(
            business_id, event.client_id, event.account_id, status, event.occurred_at
        )

    async def group_named(self, event: GroupCreatedV1 | GroupRenamedV1) -> None:
        if (business_id := _business(event)) is None:
            return
        await self.repo.group_name(
            business_id, event.group_id, event.group_name.strip()[:200], event.occurred_at
        )

    async def group_deleted(self, event: GroupDeletedV1) -> None:
        if (business_id := _business(event)) is None:
            return
        await self.repo.delete_group(business_id, event.group_id, event.occurred_at)

    async def member_added(self, event: GroupMemberAddedV1) -> None:
        await self._membership(event, is_member=True)

    async def member_removed(self, event: GroupMemberRemovedV1) -> None:
        await self._membership(event, is_member=False)

    async def _membership(
        self, event: GroupMemberAddedV1 | GroupMemberRemovedV1, *, is_member: bool
    ) -> None:
        if (business_id := _business(event)) is None:
            return
        group = await self.repo.group(business_id, event.group_id)
        if group is not None and group.deleted:
            log.info("membership_of_deleted_group_ignored", group_id=str(event.group_id))
            return
        await self.repo.membership(
            business_id,
            event.group_id,
            event.client_id,
            event.account_id,
            is_member,
            event.occurred_at,
        )
