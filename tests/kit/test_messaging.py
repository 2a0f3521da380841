"""Outbox and inbox against real PostgreSQL and RabbitMQ."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from kit.db import create_engine, create_sessionmaker
from kit.messaging import (
    Broker,
    BrokerUnavailable,
    Consumer,
    Outbox,
    OutboxRelay,
    Topology,
    declare_service_queue,
)
from tests.kit import messaging_app as app
from tests.support import infra
from tests.support.netproxy import CuttableProxy

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Harness:
    database_url: str
    amqp_url: str
    topology: Topology
    namespace: infra.BrokerNamespace
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    outbox: Outbox = field(default_factory=lambda: Outbox(app.outbox))
    cleanups: list[Callable[[], Awaitable[Any]]] = field(default_factory=list)

    def broker(self, name: str) -> Broker:
        broker = Broker(self.amqp_url, self.topology, name)
        self.cleanups.append(broker.close)
        return broker

    def relay(self, name: str = "relay", **kwargs: Any) -> OutboxRelay:
        return OutboxRelay(self.sessionmaker, app.outbox, self.broker(name), **kwargs)

    def consumer(
        self,
        handler: Callable[[app.ThingHappenedV1, AsyncSession], Awaitable[None]] = app.apply_effect,
        *,
        engine: AsyncEngine | None = None,
        **kwargs: Any,
    ) -> Consumer:
        engine = engine or self.engine
        self.namespace.services.add(app.SERVICE)
        consumer = Consumer(
            app.SERVICE,
            sessionmaker=create_sessionmaker(engine),
            engine=engine,
            inbox=app.inbox,
            broker=self.broker("consumer"),
            **kwargs,
        )
        consumer.handler(app.ThingHappenedV1)(handler)
        self.cleanups.append(consumer.stop)
        return consumer

    async def write_events(self, events: list[app.ThingHappenedV1]) -> None:
        async with self.sessionmaker() as session, session.begin():
            await self.outbox.enqueue_many(session, events)

    async def effects_by_event(self) -> dict[Any, int]:
        async with self.sessionmaker() as session:
            rows = await session.execute(
                select(app.effects.c.event_id, func.count()).group_by(app.effects.c.event_id)
            )
            return {event_id: count for event_id, count in rows.all()}

    async def unpublished(self) -> int:
        async with self.sessionmaker() as session:
            return await self.outbox.pending_count(session)


@pytest.fixture
async def harness(
    fresh_database: str, amqp_url: str, broker_namespace: infra.BrokerNamespace
) -> AsyncIterator[Harness]:
    engine = create_engine(fresh_database)
    await app.create_tables(engine)
    h = Harness(
        database_url=fresh_database,
        amqp_url=amqp_url,
        topology=Topology(broker_namespace.prefix),
        namespace=broker_namespace,
        engine=engine,
        sessionmaker=create_sessionmaker(engine),
    )
    yield h
    for cleanup in reversed(h.cleanups):
        await cleanup()
    await engine.dispose()


class Tap:
    """A queue bound to the test event: counts what actually went over the wire."""

    def __init__(self, harness: Harness, service: str = app.TAP) -> None:
        self.harness = harness
        self.service = service
        self.message_ids: list[str] = []

    async def __aenter__(self) -> Tap:
        self.harness.namespace.services.add(self.service)
        self.connection = await aio_pika.connect(self.harness.amqp_url)
        channel = await self.connection.channel()
        self.queue = await declare_service_queue(
            channel, self.harness.topology, self.service, [app.ThingHappenedV1.name], 5
        )
        return self

    async def drain(self, expected: int, timeout: float = 60) -> list[str]:
        deadline = time.monotonic() + timeout
        while len(self.message_ids) < expected and time.monotonic() < deadline:
            message = await self.queue.get(fail=False)
            if message is None:
                await asyncio.sleep(0.05)
                continue
            self.message_ids.append(str(message.message_id))
            await message.ack()
        return self.message_ids

    async def __aexit__(self, *exc: object) -> None:
        await self.connection.close()


async def wait_until(predicate: Callable[[], Awaitable[bool]], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not reached in time")


@asynccontextmanager
async def running(*runners: Callable[[asyncio.Event], Awaitable[None]]) -> AsyncIterator[None]:
    stop = asyncio.Event()
    tasks = [asyncio.create_task(run(stop)) for run in runners]
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(*tasks)


async def dead_letters(harness: Harness) -> list[aio_pika.abc.AbstractIncomingMessage]:
    connection = await aio_pika.connect(harness.amqp_url)
    found = []
    try:
        channel = await connection.channel()
        queue = await channel.get_queue(harness.topology.dead_letter_queue(app.SERVICE))
        while (message := await queue.get(fail=False)) is not None:
            found.append(message)
            await message.ack()
    finally:
        await connection.close()
    return found


# -- outbox -------------------------------------------------------------------


class CountingRelay(OutboxRelay):
    marked = 0

    async def relay_once(self) -> int:
        published = await super().relay_once()
        self.marked += published
        return published


async def test_concurrent_writers_and_two_relays_publish_each_event_exactly_once(
    harness: Harness,
) -> None:
    relays = [
        CountingRelay(
            create_sessionmaker(harness.engine),
            app.outbox,
            harness.broker(f"relay-{i}"),
            batch_size=25,
            poll_interval=0.02,
        )
        for i in range(2)
    ]
    events = [app.new_event(i) for i in range(1000)]
    chunks = [events[i : i + 10] for i in range(0, 1000, 10)]

    async def writer(my_chunks: list[list[app.ThingHappenedV1]]) -> None:
        for chunk in my_chunks:
            await harness.write_events(chunk)
            await asyncio.sleep(random.uniform(0, 0.02))

    async with Tap(harness) as tap, running(*(r.run for r in relays)):
        await asyncio.gather(*(writer(chunks[i::20]) for i in range(20)))
        seen = await tap.drain(1000)
        await wait_until(lambda: _zero(harness.unpublished))
        await asyncio.sleep(0.5)  # anything published twice would arrive by now
        seen = await tap.drain(1001, timeout=1)

    assert len(seen) == 1000
    assert set(seen) == {str(e.id) for e in events}
    assert relays[0].marked + relays[1].marked == 1000
    assert relays[0].marked > 0 and relays[1].marked > 0, "both relays should have worked"


async def _zero(count: Callable[[], Awaitable[int]]) -> bool:
    return await count() == 0


async def test_relay_killed_between_confirm_and_mark_duplicates_on_wire_not_in_effect(
    harness: Harness,
) -> None:
    events = [app.new_event(i) for i in range(20)]
    consumer = harness.consumer()
    await consumer.start()
    async with Tap(harness) as tap:
        await harness.write_events(events)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        crashed = subprocess.run(
            [
                sys.executable,
                "-m",
                "tests.kit.crashing_relay",
                harness.database_url,
                harness.amqp_url,
                harness.topology.namespace,
                str(len(events)),
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            timeout=60,
        )
        assert crashed.returncode == 17, crashed.stderr.decode()[-2000:]
        assert len(await tap.drain(20)) == 20
        assert await harness.unpublished() == 20, "nothing confirmed may be marked by a dead relay"

        async with running(harness.relay().run):
            await wait_until(lambda: _zero(harness.unpublished))
            on_wire = await tap.drain(40)
    assert len(on_wire) == 40 and len(set(on_wire)) == 20, "each event went out twice"
    await wait_until(lambda: _has_effects(harness, 20))
    await asyncio.sleep(0.5)
    effects = await harness.effects_by_event()
    assert effects == {e.id: 1 for e in events}


async def _has_effects(harness: Harness, n: int) -> bool:
    return len(await harness.effects_by_event()) >= n


async def test_unroutable_event_is_not_marked_sent(harness: Harness) -> None:
    lonely = app.NobodyListensV1()
    async with harness.sessionmaker() as session, session.begin():
        await harness.outbox.enqueue(session, lonely)
    relay = harness.relay()
    assert await relay.relay_once() == 0
    async with harness.sessionmaker() as session:
        row = (await session.execute(select(app.outbox).where(app.outbox.c.id == lonely.id))).one()
    assert row.published_at is None
    assert row.attempts == 1
    assert "Return" in row.last_error or "route" in row.last_error.lower()


# -- inbox --------------------------------------------------------------------


async def publish_raw(
    harness: Harness, body: bytes, routing_key: str = app.ThingHappenedV1.name
) -> None:
    broker = harness.broker("raw")
    exchange = await broker.events_exchange()
    await exchange.publish(
        aio_pika.Message(body=body, content_type="application/json"), routing_key=routing_key
    )


async def test_duplicate_delivery_does_nothing(harness: Harness) -> None:
    consumer = harness.consumer()
    await consumer.start()
    event = app.new_event(1)
    for _ in range(3):
        await publish_raw(harness, event.model_dump_json().encode())
    await wait_until(lambda: _has_effects(harness, 1))
    await asyncio.sleep(1)
    assert await harness.effects_by_event() == {event.id: 1}


@pytest.mark.parametrize(
    "body",
    [b"{not json", b'{"id": "not-a-uuid", "seq": 1}', b'{"seq": "many"}', b"[]"],
    ids=["bad-json", "bad-id", "bad-field", "wrong-shape"],
)
async def test_malformed_message_goes_to_dlq_after_one_delivery(
    harness: Harness, body: bytes
) -> None:
    calls = 0

    async def handler(event: app.ThingHappenedV1, session: AsyncSession) -> None:
        nonlocal calls
        calls += 1

    await harness.consumer(handler, delivery_limit=5).start()
    await publish_raw(harness, body)
    found: list[Any] = []

    async def in_dlq() -> bool:
        found.extend(await dead_letters(harness))
        return bool(found)

    await wait_until(in_dlq, timeout=10)
    assert calls == 0
    assert found[0].body == body
    deaths = found[0].headers["x-death"]
    assert deaths[0]["reason"] == "rejected"
    assert deaths[0]["count"] == 1
    assert found[0].headers.get("x-delivery-count", 0) == 0, "it was delivered only once"


async def test_handler_failing_twice_then_succeeding_is_processed_once(harness: Harness) -> None:
    attempts = 0

    async def flaky(event: app.ThingHappenedV1, session: AsyncSession) -> None:
        nonlocal attempts
        attempts += 1
        await app.apply_effect(event, session)  # rolled back with the savepoint on failure
        if attempts <= 2:
            raise RuntimeError("transient failure in a handler")

    await harness.consumer(flaky, delivery_limit=5).start()
    event = app.new_event(7)
    await publish_raw(harness, event.model_dump_json().encode())
    await wait_until(lambda: _has_effects(harness, 1), timeout=20)
    await asyncio.sleep(1)
    assert attempts == 3
    assert await harness.effects_by_event() == {event.id: 1}
    assert await dead_letters(harness) == []


async def test_handler_failing_for_ever_is_dead_lettered_at_the_limit(harness: Harness) -> None:
    attempts = 0

    async def broken(event: app.ThingHappenedV1, session: AsyncSession) -> None:
        nonlocal attempts
        attempts += 1
        raise RuntimeError("bug")

    await harness.consumer(broken, delivery_limit=2).start()
    event = app.new_event(8)
    await publish_raw(harness, event.model_dump_json().encode())
    found: list[Any] = []

    async def in_dlq() -> bool:
        found.extend(await dead_letters(harness))
        return bool(found)

    await wait_until(in_dlq, timeout=20)
    assert attempts == 3  # the first delivery plus delivery_limit redeliveries
    assert json.loads(found[0].body)["id"] == str(event.id)


async def test_database_outage_sends_nothing_to_dlq_and_loses_nothing(harness: Harness) -> None:
    pg = make_url(harness.database_url)
    proxy = await CuttableProxy(pg.host or "127.0.0.1", pg.port or 5432).start()
    harness.cleanups.append(proxy.close)
    via_proxy = create_engine(
        pg.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    )
    harness.cleanups.append(via_proxy.dispose)
    await harness.consumer(engine=via_proxy, delivery_limit=2).start()

    first = [app.new_event(i) for i in range(10)]
    for event in first:
        await publish_raw(harness, event.model_dump_json().encode())
    await wait_until(lambda: _has_effects(harness, 10))

    proxy.cut()
    during = [app.new_event(100 + i) for i in range(50)]
    for event in during:
        await publish_raw(harness, event.model_dump_json().encode())
    await asyncio.sleep(6)  # long enough for many retries at a delivery limit of 2
    assert await dead_letters(harness) == []
    assert len(await harness.effects_by_event()) == 10

    proxy.restore()
    await wait_until(lambda: _has_effects(harness, 60), timeout=60)
    effects = await harness.effects_by_event()
    assert effects == {e.id: 1 for e in first + during}
    assert await dead_letters(harness) == []


async def test_consumer_and_relay_come_back_after_broker_drops_all_connections(
    harness: Harness,
) -> None:
    await harness.consumer().start()
    before = [app.new_event(i) for i in range(10)]
    after = [app.new_event(100 + i) for i in range(10)]
    async with running(harness.relay(poll_interval=0.05).run):
        await harness.write_events(before)
        await wait_until(lambda: _has_effects(harness, 10))

        infra.close_all_broker_connections()
        await harness.write_events(after)
        await wait_until(lambda: _has_effects(harness, 20), timeout=60)
        await wait_until(lambda: _zero(harness.unpublished))
    assert await harness.effects_by_event() == {e.id: 1 for e in before + after}


async def test_a_batch_handler_gets_runs_of_new_events_and_applies_each_once(
    harness: Harness,
) -> None:
    """Registered with ``batch_handler``: one call per run of new events in a batch,
    every event exactly once (a redelivered one is skipped by the inbox as usual)."""
    calls: list[int] = []

    async def apply_many(events: list[app.ThingHappenedV1], session: AsyncSession) -> None:
        calls.append(len(events))
        for event in events:
            await app.apply_effect(event, session)

    def batch_consumer() -> Consumer:
        harness.namespace.services.add(app.SERVICE)
        consumer = Consumer(
            app.SERVICE,
            sessionmaker=harness.sessionmaker,
            engine=harness.engine,
            inbox=app.inbox,
            broker=harness.broker("consumer"),
            concurrency=1,
        )
        consumer.batch_handler(app.ThingHappenedV1)(apply_many)
        harness.cleanups.append(consumer.stop)
        return consumer

    declaring = batch_consumer()  # declares the queue, then goes away
    await declaring.start()
    await declaring.stop()
    events = [app.new_event(n) for n in range(300)]
    for event in events:  # waiting in the queue: the consumer finds full batches
        await publish_raw(harness, event.model_dump_json().encode())
    await publish_raw(harness, events[0].model_dump_json().encode())  # a redelivery
    await batch_consumer().start()
    await wait_until(lambda: _has_effects(harness, len(events)))
    await asyncio.sleep(0.5)
    assert await harness.effects_by_event() == {e.id: 1 for e in events}
    assert sum(calls) == len(events)
    assert len(calls) < len(events) / 10, calls  # batches, not one call per event


async def test_rows_are_not_pushed_back_while_the_broker_is_away(harness: Harness) -> None:
    """A publish that fails because the path to the broker is gone is no fault of its
    row: the rows stay due (attempts unchanged) and go out as soon as it is back."""
    amqp = urlsplit(harness.amqp_url)
    proxy = await CuttableProxy(amqp.hostname or "127.0.0.1", amqp.port or 5672).start()
    harness.cleanups.append(proxy.close)
    proxied_url = urlunsplit(
        amqp._replace(netloc=amqp.netloc.rsplit("@", 1)[0] + f"@127.0.0.1:{proxy.port}")
    )
    broker = Broker(proxied_url, harness.topology, "relay-via-proxy")
    harness.cleanups.append(broker.close)
    relay = OutboxRelay(harness.sessionmaker, app.outbox, broker, publish_timeout=2)
    await harness.consumer().start()
    await harness.write_events([app.new_event(0)])
    assert await relay.relay_once() == 1  # connected, exchange and channel in hand

    proxy.cut()
    away = [app.new_event(1 + i) for i in range(20)]
    await harness.write_events(away)
    with pytest.raises(BrokerUnavailable):
        await relay.relay_once()
    async with harness.sessionmaker() as session:
        attempts = (
            await session.execute(
                select(app.outbox.c.attempts).where(app.outbox.c.published_at.is_(None))
            )
        ).scalars()
        assert sorted(attempts) == [0] * 20

    proxy.restore()
    async with running(relay.run):
        await wait_until(lambda: _zero(harness.unpublished), timeout=15)
    await wait_until(lambda: _has_effects(harness, 21))
