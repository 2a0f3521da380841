"""A tiny service used by the kit's messaging tests: outbox, inbox and an effects table."""

from __future__ import annotations

import uuid
from typing import ClassVar

from sqlalchemy import Column, Integer, Table, Uuid, insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from kit.contracts.base import Event
from kit.db import new_metadata
from kit.messaging import inbox_table, outbox_table

metadata = new_metadata()
outbox = outbox_table(metadata)
inbox = inbox_table(metadata)
# One row per time a handler's effect was applied: duplicates would show as extra rows.
effects = Table(
    "effects",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", Uuid, nullable=False),
    Column("seq", Integer, nullable=False),
)

SERVICE = "kit-test"
TAP = "kit-test-tap"


class ThingHappenedV1(Event):
    name: ClassVar[str] = "kittest.thing_happened.v1"

    seq: int


class NobodyListensV1(Event):
    name: ClassVar[str] = "kittest.nobody_listens.v1"


async def create_tables(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)


async def apply_effect(event: ThingHappenedV1, session: AsyncSession) -> None:
    await session.execute(insert(effects).values(event_id=event.id, seq=event.seq))


def new_event(seq: int) -> ThingHappenedV1:
    return ThingHappenedV1(seq=seq, business_id=uuid.uuid4())
