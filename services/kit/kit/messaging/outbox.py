"""Transactional outbox.

A service never publishes directly: it writes the event row in the same
transaction as its state change (:meth:`Outbox.enqueue`). The relay reads
pending rows (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several relays
share the work without publishing a row twice at the same time), publishes
them with publisher confirms and ``mandatory=True``, and marks a row only
after the broker confirmed it. A crash between confirm and mark republishes
the row later: consumers are idempotent, so that is a duplicate on the
wire, never a duplicate effect.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aio_pika
from aiormq.abc import ConfirmationFrameType
from aiormq.exceptions import ChannelInvalidStateError
from pamqp.commands import Basic
from sqlalchemy import (
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    Uuid,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kit.aio import wait_for_stop
from kit.contracts.base import Event
from kit.db import UTCDateTime, utcnow
from kit.logging import current_ids, get_logger
from kit.messaging.broker import Broker, BrokerUnavailable
from kit.metrics import (
    EVENTS_PUBLISH_FAILED,
    EVENTS_PUBLISHED,
    OUTBOX_BACKLOG,
    OUTBOX_OLDEST_AGE,
)

log = get_logger(__name__)

MAX_BACKOFF_SECONDS = 60
# How often the relay measures its backlog (one COUNT/MIN query) for the gauges.
GAUGE_INTERVAL_SECONDS = 5.0


def broker_away(error: BaseException) -> bool:
    """The publish failed because the broker (or the path to it) is away, not because
    of the message: a lost connection or channel, or no confirm within the timeout."""
    return isinstance(
        error, ConnectionError | ChannelInvalidStateError | TimeoutError | BrokerUnavailable
    )


def outbox_table(metadata: MetaData) -> Table:
    table = Table(
        "outbox",
        metadata,
        Column("id", Uuid, primary_key=True),  # the event id
        Column("name", String(200), nullable=False),
        Column("payload", Text, nullable=False),
        Column("headers", Text, nullable=False),
        Column("created_at", UTCDateTime, nullable=False),
        Column("available_at", UTCDateTime, nullable=False),
        Column("published_at", UTCDateTime, nullable=True),
        Column("attempts", Integer, nullable=False, server_default="0"),
        Column("last_error", Text, nullable=True),
    )
    Index(
        "ix_outbox_pending",
        table.c.available_at,
        postgresql_where=table.c.published_at.is_(None),
        sqlite_where=table.c.published_at.is_(None),
    )
    Index("ix_outbox_published_at", table.c.published_at)
    return table


def _row_for(event: Event) -> dict[str, Any]:
    ids = current_ids()
    if event.correlation_id is None:
        # The request (or the event being handled) that caused this one; an event
        # caused by neither (a periodic job) starts a chain of its own.
        correlation_id = ids.get("correlation_id") or ids.get("request_id") or str(event.id)
        event = event.model_copy(update={"correlation_id": correlation_id})
    headers = {
        "correlation_id": event.correlation_id,
        "request_id": ids.get("request_id"),
    }
    now = utcnow()
    return {
        "id": event.id,
        "name": event.name,
        "payload": event.model_dump_json(),
        "headers": json.dumps({k: v for k, v in headers.items() if v}),
        "created_at": now,
        "available_at": now,
        "attempts": 0,
    }


class Outbox:
    """Writes events into the service's outbox table, inside the caller's transaction."""

    def __init__(self, table: Table) -> None:
        self.table = table

    async def enqueue(self, session: AsyncSession, event: Event) -> None:
        await session.execute(insert(self.table).values(_row_for(event)))

    async def enqueue_many(self, session: AsyncSession, events: Iterable[Event]) -> None:
        rows = [_row_for(e) for e in events]
        if rows:
            await session.execute(insert(self.table), rows)

    async def pending_count(self, session: AsyncSession) -> int:
        query = select(func.count()).where(self.table.c.published_at.is_(None))
        return int((await session.execute(query)).scalar_one())


@dataclass(frozen=True)
class _Pending:
    id: uuid.UUID
    name: str
    payload: str
    headers: str
    attempts: int


class OutboxRelay:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        table: Table,
        broker: Broker,
        *,
        batch_size: int = 500,
        poll_interval: float = 0.1,
        retention: timedelta = timedelta(hours=1),
        publish_timeout: float = 10.0,
        gauge_interval: float = GAUGE_INTERVAL_SECONDS,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.table = table
        self.broker = broker
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.retention = retention
        self.publish_timeout = publish_timeout
        self.gauge_interval = gauge_interval
        self._gauges_due = 0.0  # time.monotonic() of the next backlog measurement

    async def _publish(self, exchange: aio_pika.abc.AbstractExchange, row: _Pending) -> None:
        headers = json.loads(row.headers)
        message = aio_pika.Message(
            body=row.payload.encode(),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=str(row.id),
            type=row.name,
            correlation_id=headers.get("correlation_id"),
            headers=headers,
        )
        confirmation: ConfirmationFrameType | Any = await exchange.publish(
            message, routing_key=row.name, mandatory=True, timeout=self.publish_timeout
        )
        if not isinstance(confirmation, Basic.Ack):
            raise RuntimeError(f"broker did not confirm the message: {confirmation!r}")

    async def relay_once(self) -> int:
        """Publish one batch. Returns how many rows were confirmed and marked."""
        t = self.table
        now = utcnow()
        async with self.sessionmaker() as session, session.begin():
            query = (
                select(t.c.id, t.c.name, t.c.payload, t.c.headers, t.c.attempts)
                .where(t.c.published_at.is_(None), t.c.available_at <= now)
                .order_by(t.c.available_at)
                .limit(self.batch_size)
                .with_for_update(skip_locked=True)
            )
            rows = [_Pending(*r) for r in (await session.execute(query)).all()]
            if not rows:
                return 0
            exchange = await self.broker.events_exchange()
            results = await asyncio.gather(
                *(self._publish(exchange, row) for row in rows), return_exceptions=True
            )
            confirmed = [row.id for row, res in zip(rows, results, strict=True) if res is None]
            failed = [
                (row, res)
                for row, res in zip(rows, results, strict=True)
                if isinstance(res, BaseException)
            ]
            if confirmed:
                await session.execute(
                    update(t).where(t.c.id.in_(confirmed)).values(published_at=utcnow())
                )
            # A broker that is away is no fault of the row: pushing each row's next try
            # back would leave the backlog waiting up to a minute after the broker is back.
            # Those rows stay due, and the whole relay backs off (run) instead.
            away = [error for _row, error in failed if broker_away(error)]
            for row, error in failed:
                if not broker_away(error):
                    await self._record_failure(session, row, error)
        # Counted once the marks are committed (a rollback republishes them later).
        published_names = Counter(
            row.name for row, res in zip(rows, results, strict=True) if res is None
        )
        for name, count in published_names.items():
            EVENTS_PUBLISHED.labels(name).inc(count)
        for row, _error in failed:
            EVENTS_PUBLISH_FAILED.labels(row.name).inc()
        if away:
            raise BrokerUnavailable(
                f"{len(away)} of {len(rows)} publishes failed: {type(away[0]).__name__}: {away[0]}"
            )
        return len(confirmed)

    async def measure_backlog(self) -> tuple[int, float]:
        """Set the outbox gauges (one query): unpublished rows, age of the oldest in s."""
        t = self.table
        async with self.sessionmaker() as session:
            count, oldest = (
                await session.execute(
                    select(func.count(), func.min(t.c.created_at)).where(t.c.published_at.is_(None))
                )
            ).one()
        age = max((utcnow() - oldest).total_seconds(), 0.0) if oldest is not None else 0.0
        OUTBOX_BACKLOG.set(count)
        OUTBOX_OLDEST_AGE.set(age)
        return int(count), age

    async def _maybe_measure_backlog(self) -> None:
        now = time.monotonic()
        if now < self._gauges_due:
            return
        self._gauges_due = now + self.gauge_interval
        try:
            await self.measure_backlog()
        except Exception as exc:  # the database is away: the gauges keep their last value
            log.debug("outbox_backlog_unmeasured", error=f"{type(exc).__name__}: {exc}")

    async def _record_failure(
        self, session: AsyncSession, row: _Pending, error: BaseException
    ) -> None:
        attempts = row.attempts + 1
        delay = min(2**attempts, MAX_BACKOFF_SECONDS)
        log.warning(
            "outbox_publish_failed",
            event_id=str(row.id),
            event_name=row.name,
            attempts=attempts,
            retry_in_s=delay,
            error=f"{type(error).__name__}: {error}",
        )
        await session.execute(
            update(self.table)
            .where(self.table.c.id == row.id)
            .values(
                attempts=attempts,
                available_at=utcnow() + timedelta(seconds=delay),
                last_error=f"{type(error).__name__}: {error}"[:2000],
            )
        )

    async def purge_published(self) -> int:
        """Drop rows published longer ago than the retention (they may hold tokens)."""
        cutoff = utcnow() - self.retention
        async with self.sessionmaker() as session, session.begin():
            result = await session.execute(
                delete(self.table).where(
                    self.table.c.published_at.is_not(None), self.table.c.published_at < cutoff
                )
            )
        return int(getattr(result, "rowcount", 0) or 0)

    async def run(self, stop: asyncio.Event) -> None:
        log.info("outbox_relay_started", batch_size=self.batch_size)
        failures = 0
        while not stop.is_set():
            try:
                published = await self.relay_once()
                failures = 0
            except Exception as exc:  # database or broker away: back off and retry
                failures += 1
                published = 0
                log.warning(
                    "outbox_relay_error", error=f"{type(exc).__name__}: {exc}", failures=failures
                )
                await self._maybe_measure_backlog()  # the backlog grows while the broker is away
                await wait_for_stop(stop, min(0.5 * failures, 5.0))
                continue
            await self._maybe_measure_backlog()
            if published < self.batch_size:
                await wait_for_stop(stop, self.poll_interval)
