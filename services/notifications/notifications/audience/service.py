"""The client book's events applied to the audience read model.

Handlers run in the consumer's transaction and only write rows. Events can
come late, twice or out of order; the repository's upserts let the newest
fact win, so the result does not depend on the order.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from kit.contracts.base import Event
from kit.contracts.clients import (
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
from kit.validation import normalize_email
from notifications.audience.repository import AudienceRepository
from notifications.emails.rendering import one_line
from notifications.models import ACTIVE, ARCHIVED

log = get_logger(__name__)


def stored_address(email: str) -> str:
    """The normalised address; one that does not validate is kept (one line, lower
    case) so the sender can record why it could not be sent."""
    try:
        return normalize_email(email)
    except ValueError:
        return one_line(email, 320).lower()


def _business(event: Event) -> uuid.UUID | None:
    if event.business_id is None:
        log.error("client_book_event_without_business_id", event_name=event.name)
    return event.business_id


@dataclass
class AudienceService:
    session: AsyncSession
    repo: AudienceRepository = field(init=False)

    def __post_init__(self) -> None:
        self.repo = AudienceRepository(self.session)

    async def client_added(self, event: ClientAddedV1) -> None:
        # Added (or added again after leaving): active as of this event.
        if (business_id := _business(event)) is None:
            return
        await self.repo.client_profile(
            business_id=business_id,
            client_id=event.client_id,
            account_id=event.account_id,
            email=stored_address(event.email),
            display_name=one_line(event.display_name) or None,
            status=ACTIVE,
            occurred_at=event.occurred_at,
        )

    async def client_archived(self, event: ClientArchivedV1) -> None:
        await self._client_status(event, ARCHIVED)

    async def client_restored(self, event: ClientRestoredV1) -> None:
        await self._client_status(event, ACTIVE)

    async def _client_status(self, event: ClientArchivedV1 | ClientRestoredV1, status: str) -> None:
        if (business_id := _business(event)) is None:
            return
        await self.repo.client_status(
            business_id=business_id,
            client_id=event.client_id,
            account_id=event.account_id,
            status=status,
            occurred_at=event.occurred_at,
        )

    async def group_named(self, event: GroupCreatedV1 | GroupRenamedV1) -> None:
        if (business_id := _business(event)) is None:
            return
        await self.repo.group_name(
            business_id, event.group_id, one_line(event.group_name), event.occurred_at
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
            # Late news about a group that is gone: its memberships ended with it.
            log.info("membership_of_deleted_group_ignored", group_id=str(event.group_id))
            return
        # A group not known yet still gets the membership: its creation event is late.
        await self.repo.membership(
            business_id, event.group_id, event.client_id, is_member, event.occurred_at
        )
