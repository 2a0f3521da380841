"""Inbox: idempotent event consumption.

A handler is a plain async function of a typed event and the session of the
transaction it runs in::

    consumer = Consumer("notifications", ...)

    @consumer.handler(AccountRegisteredV1)
    async def send_welcome(event: AccountRegisteredV1, session: AsyncSession) -> None: ...

Every message is handled inside a transaction that also inserts
``(consumer, event id)`` into the inbox table; a duplicate delivery finds
the row and does nothing. Messages are processed in small batches, all or
nothing, in one transaction (one multi-row inbox insert, then the
handlers); if anything in a batch fails, each of its messages is redone in
a transaction of its own so only the culprit is retried. Acks go out only
after the commit.

Failures:
- a message that cannot be decoded or validated goes to the DLQ at once;
- a handler exception is retried (nack + requeue, with a growing pause)
  until the queue's delivery limit dead-letters it;
- when the database is unreachable the messages are held and retried in
  process until it answers again, so an outage never fills the DLQ.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import pydantic
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue
from sqlalchemy import Column, MetaData, PrimaryKeyConstraint, String, Table, Uuid, delete
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from kit.contracts.base import Event
from kit.db import (
    UTCDateTime,
    database_reachable,
    insert_ignoring_conflicts,
    utcnow,
)
from kit.logging import bound_ids, get_logger
from kit.messaging.broker import Broker, declare_service_queue
from kit.metrics import (
    DLQ_MESSAGES,
    EVENTS_CONSUMED,
    EVENTS_DEAD_LETTERED,
    EVENTS_FAILED,
    INBOX_DUPLICATES,
    UNKNOWN_EVENT,
    touch,
)

log = get_logger(__name__)

E = TypeVar("E", bound=Event)
Handler = Callable[[Any, AsyncSession], Awaitable[None]]
TypedHandler = Callable[[E, AsyncSession], Awaitable[None]]
BatchHandler = Callable[[list[E], AsyncSession], Awaitable[None]]


def inbox_table(metadata: MetaData) -> Table:
    return Table(
        "inbox",
        metadata,
        Column("consumer", String(100), nullable=False),
        Column("event_id", Uuid, nullable=False),
        Column("event_name", String(200), nullable=False),
        Column("processed_at", UTCDateTime, nullable=False, index=True),
        PrimaryKeyConstraint("consumer", "event_id"),
    )


class InvalidMessage(ValueError):
    """The message can never be processed: wrong shape, unknown name, bad JSON."""


@dataclass
class _Delivery:
    message: AbstractIncomingMessage
    event: Event
    handler: Handler


class Consumer:
    def __init__(
        self,
        service: str,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        engine: AsyncEngine,
        inbox: Table,
        broker: Broker,
        delivery_limit: int = 5,
        prefetch: int = 200,
        batch_size: int = 100,
        concurrency: int = 2,
        retention: timedelta = timedelta(days=7),
    ) -> None:
        self.service = service
        self.sessionmaker = sessionmaker
        self.engine = engine
        self.inbox = inbox
        self.broker = broker
        self.delivery_limit = delivery_limit
        self.prefetch = prefetch
        self.batch_size = batch_size
        self.concurrency = concurrency
        self.retention = retention
        self._handlers: dict[str, tuple[type[Event], Handler]] = {}
        self._pending: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._queue: AbstractQueue | None = None
        self._consumer_tag: str | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._retry_tasks: set[asyncio.Task[None]] = set()
        self._batch_handlers: dict[str, BatchHandler[Event]] = {}

    # -- registration -------------------------------------------------------

    def handler(self, event_type: type[E]) -> Callable[[TypedHandler[E]], TypedHandler[E]]:
        def register(func: TypedHandler[E]) -> TypedHandler[E]:
            if event_type.name in self._handlers:
                raise ValueError(f"{self.service} already handles {event_type.name}")
            self._handlers[event_type.name] = (event_type, func)
            return func

        return register

    def batch_handler(self, event_type: type[E]) -> Callable[[BatchHandler[E]], BatchHandler[E]]:
        """Like ``handler``, for a handler that takes the new events of one name in a
        batch at once (``await func(events, session)``): one call for a run of such
        events, in delivery order, instead of one per event (and so one query per step
        of its work for the run). Same transaction, same all-or-nothing retry."""

        def register(func: BatchHandler[E]) -> BatchHandler[E]:
            async def one(event: E, session: AsyncSession) -> None:
                await func([event], session)

            self.handler(event_type)(one)
            self._batch_handlers[event_type.name] = func  # type: ignore[assignment]
            return func

        return register

    @property
    def event_names(self) -> list[str]:
        return sorted(self._handlers)

    # -- lifecycle ----------------------------------------------------------

    async def start(self) -> None:
        connection = await self.broker.consume_connection()
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=self.prefetch)
        self._queue = await declare_service_queue(
            channel, self.broker.topology, self.service, self.event_names, self.delivery_limit
        )
        names = [(name,) for name in self.event_names]
        for metric in (EVENTS_CONSUMED, EVENTS_FAILED, INBOX_DUPLICATES):
            touch(metric, *names)
        touch(EVENTS_DEAD_LETTERED, *((name, "retries_exhausted") for name in self.event_names))
        for _ in range(self.concurrency):
            self._tasks.append(asyncio.create_task(self._process_loop()))
        self._consumer_tag = await self._queue.consume(self._on_message)
        log.info("consumer_started", queue=self._queue.name, events=self.event_names)

    async def stop(self) -> None:
        if self._queue is not None and self._consumer_tag is not None:
            try:
                await self._queue.cancel(self._consumer_tag)
            except Exception as exc:
                log.warning("consumer_cancel_failed", error=str(exc))
        # Let the batches in flight finish (briefly), then stop the loops; whatever
        # is left unacked goes back to the queue when the channel closes.
        for _ in range(100):
            if self._pending.empty():
                break
            await asyncio.sleep(0.05)
        for task in [*self._tasks, *self._retry_tasks]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._retry_tasks, return_exceptions=True)
        self._tasks.clear()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        await self._pending.put(message)

    async def _process_loop(self) -> None:
        while True:
            batch = [await self._pending.get()]
            while len(batch) < self.batch_size and not self._pending.empty():
                batch.append(self._pending.get_nowait())
            try:
                await self.process(batch)
            except asyncio.CancelledError:
                raise
            except Exception:  # never let the loop die; messages stay unacked and return
                log.exception("consumer_batch_crashed", size=len(batch))

    # -- processing ---------------------------------------------------------

    def decode(self, message: AbstractIncomingMessage) -> tuple[Event, Handler]:
        name = message.routing_key or message.type or ""
        registered = self._handlers.get(name)
        if registered is None:
            raise InvalidMessage(f"no handler for {name!r} in {self.service}")
        event_type, handler = registered
        try:
            event = event_type.model_validate_json(message.body)
        except (pydantic.ValidationError, ValueError) as exc:
            raise InvalidMessage(f"{name}: {exc}") from exc
        return event, handler

    async def process(self, messages: list[AbstractIncomingMessage]) -> None:
        deliveries: list[_Delivery] = []
        for message in messages:
            try:
                event, handler = self.decode(message)
            except InvalidMessage as exc:
                log.error(
                    "message_invalid_dead_lettered",
                    error=str(exc)[:500],
                    message_id=message.message_id,
                    routing_key=message.routing_key,
                )
                await _settle(message.reject(requeue=False))
                EVENTS_DEAD_LETTERED.labels(self._event_label(message), "invalid").inc()
                continue
            deliveries.append(_Delivery(message, event, handler))
        if deliveries:
            await self._handle(deliveries)

    async def _handle(self, deliveries: list[_Delivery]) -> None:
        outage_wait = 0.5
        while True:
            try:
                handled, duplicates = await self._run_transaction(deliveries)
                failure: BaseException | None = None
                break
            except Exception as exc:
                if not await database_reachable(self.engine):
                    log.warning(
                        "database_unreachable_holding_messages",
                        held=len(deliveries),
                        retry_in_s=outage_wait,
                        error=f"{type(exc).__name__}: {exc}"[:300],
                    )
                    await asyncio.sleep(outage_wait)
                    outage_wait = min(outage_wait * 2, 10.0)
                    continue
                if len(deliveries) > 1:
                    # Something in the batch failed: redo each message in its own
                    # transaction so only the culprit is retried.
                    for delivery in deliveries:
                        await self._handle([delivery])
                    return
                failure = exc
                EVENTS_FAILED.labels(deliveries[0].event.name).inc()
                log.warning(
                    "event_handler_failed",
                    event_id=str(deliveries[0].event.id),
                    event_name=deliveries[0].event.name,
                    error=f"{type(exc).__name__}: {exc}"[:500],
                    delivery_count=_delivery_count(deliveries[0].message),
                )
                break
        if failure is None:
            await asyncio.gather(*(_settle(d.message.ack()) for d in deliveries))
            for name in handled:
                EVENTS_CONSUMED.labels(name).inc()
            for name in duplicates:
                INBOX_DUPLICATES.labels(name).inc()
        else:
            for delivery in deliveries:
                self._retry_later(delivery, failure)

    async def _run_transaction(self, deliveries: list[_Delivery]) -> tuple[list[str], list[str]]:
        """All of the batch or none of it: one inbox insert, then each new event's handler.

        Returns the names of the events handled and of the duplicates skipped."""
        handled: list[str] = []
        first_of_each: dict[uuid.UUID, _Delivery] = {}
        for delivery in deliveries:  # the same event twice in one batch runs once
            first_of_each.setdefault(delivery.event.id, delivery)
        duplicates = [d.event.name for d in deliveries if first_of_each[d.event.id] is not d]
        async with self.sessionmaker() as session, session.begin():
            fresh = await self._record(session, [d.event for d in first_of_each.values()])
            run: list[Event] = []  # consecutive new events for one batch handler

            async def flush_run() -> None:
                if run:
                    with bound_ids(event_name=run[0].name):
                        await self._batch_handlers[run[0].name](list(run), session)
                    handled.extend(e.name for e in run)
                    run.clear()

            for event_id, delivery in first_of_each.items():
                if event_id in fresh and delivery.event.name in self._batch_handlers:
                    if run and run[0].name != delivery.event.name:
                        await flush_run()
                    run.append(delivery.event)
                    continue
                await flush_run()
                event = delivery.event
                message = delivery.message
                # The request that caused the event (and its chain): bound for the
                # handler's log lines and for the events it enqueues in turn.
                request_id = (message.headers or {}).get("request_id")
                with bound_ids(
                    correlation_id=event.correlation_id or message.correlation_id,
                    request_id=request_id if isinstance(request_id, str) else None,
                    event_id=str(event_id),
                    event_name=event.name,
                ):
                    if event_id not in fresh:
                        log.info("event_duplicate_skipped")
                        duplicates.append(event.name)
                        continue
                    await delivery.handler(event, session)
                    handled.append(event.name)
            await flush_run()
        return handled, duplicates

    async def _record(self, session: AsyncSession, events: list[Event]) -> set[uuid.UUID]:
        """Insert the inbox rows; returns the ids that were not there yet."""
        now = utcnow()
        # One compiled statement, executed for many rows (SQLAlchemy batches it into
        # multi-row VALUES): no per-batch compile, one round trip.
        statement = insert_ignoring_conflicts(
            self.engine.dialect.name, self.inbox, ["consumer", "event_id"]
        ).returning(self.inbox.c.event_id)
        rows = [
            {"consumer": self.service, "event_id": e.id, "event_name": e.name, "processed_at": now}
            for e in events
        ]
        result = await session.execute(statement, rows)
        return set(result.scalars())

    def _retry_later(self, delivery: _Delivery, error: BaseException | None) -> None:
        count = _delivery_count(delivery.message)
        if count >= self.delivery_limit:
            EVENTS_DEAD_LETTERED.labels(delivery.event.name, "retries_exhausted").inc()
            log.error(
                "event_dead_lettered_after_retries",
                event_id=str(delivery.event.id),
                event_name=delivery.event.name,
                attempts=count + 1,
                error=f"{type(error).__name__}: {error}"[:500] if error else None,
            )
        delay = min(0.2 * (2**count), 5.0)
        task = asyncio.create_task(self._nack_after(delivery.message, delay))
        self._retry_tasks.add(task)
        task.add_done_callback(self._retry_tasks.discard)

    async def _nack_after(self, message: AbstractIncomingMessage, delay: float) -> None:
        await asyncio.sleep(delay)
        await _settle(message.nack(requeue=True))

    def _event_label(self, message: AbstractIncomingMessage) -> str:
        name = message.routing_key or message.type or ""
        return name if name in self._handlers else UNKNOWN_EVENT

    async def measure_dead_letters(self) -> int:
        """Set the DLQ gauge from a passive declare of ``<service>.dlq``, on a channel of
        its own (a failed passive declare closes its channel, never the consumer's)."""
        name = self.broker.topology.dead_letter_queue(self.service)
        connection = await self.broker.consume_connection()
        channel = await connection.channel()
        try:
            underlay = await channel.get_underlay_channel()
            declared = await underlay.queue_declare(name, passive=True)
        finally:
            if not channel.is_closed:
                await channel.close()
        count = int(declared.message_count or 0)
        DLQ_MESSAGES.labels(name).set(count)
        return count

    async def purge_inbox(self) -> int:
        cutoff = utcnow() - self.retention
        async with self.sessionmaker() as session, session.begin():
            result = await session.execute(
                delete(self.inbox).where(self.inbox.c.processed_at < cutoff)
            )
        return int(getattr(result, "rowcount", 0) or 0)


def _delivery_count(message: AbstractIncomingMessage) -> int:
    """Earlier failed deliveries of this message (quorum queues count them)."""
    value = (message.headers or {}).get("x-delivery-count", 0)
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0


async def _settle(result: Awaitable[None]) -> None:
    """Ack/nack; the channel may be gone after a reconnect, then the broker redelivers."""
    try:
        await result
    except Exception as exc:
        log.warning("message_settle_failed", error=f"{type(exc).__name__}: {exc}")
