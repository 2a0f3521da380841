"""The events the catalog reacts to: the client book, kept as a read model.

Each handler only writes rows, in the consumer's transaction; the inbox makes
a redelivered event a no-op and the repository's upserts make the order of
events irrelevant.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from catalog import models
from catalog.config import CatalogSettings
from catalog.eligibility.service import ReadModelService
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
from kit.messaging import Consumer
from kit.runtime import ServiceContext

SERVICE = "catalog"

Apply = Callable[[ReadModelService, Any], Awaitable[None]]

HANDLERS: dict[type[Event], Apply] = {
    BusinessCreatedV1: ReadModelService.business_created,
    ClientAddedV1: ReadModelService.client_added,
    ClientArchivedV1: ReadModelService.client_archived,
    ClientRestoredV1: ReadModelService.client_restored,
    GroupCreatedV1: ReadModelService.group_named,
    GroupRenamedV1: ReadModelService.group_named,
    GroupDeletedV1: ReadModelService.group_deleted,
    GroupMemberAddedV1: ReadModelService.member_added,
    GroupMemberRemovedV1: ReadModelService.member_removed,
}


async def handle(event: Event, session: AsyncSession) -> None:
    """Apply one event to the read model (what the consumer does for each new event)."""
    await HANDLERS[type(event)](ReadModelService(session), event)


def build_consumer(context: ServiceContext, settings: CatalogSettings) -> Consumer:
    consumer = Consumer(
        SERVICE,
        sessionmaker=context.sessionmaker,
        engine=context.engine,
        inbox=models.inbox,
        broker=context.broker,
        delivery_limit=settings.delivery_limit,
        prefetch=settings.consumer_prefetch,
        batch_size=settings.consumer_batch_size,
    )
    for event_type in HANDLERS:
        consumer.handler(event_type)(handle)
    return consumer
