"""Event pipeline: outbox -> RabbitMQ -> inbox handler, end to end, beside raw aio-pika.

Baseline (same run, same broker): raw aio-pika publishing with confirms in
batches, then consuming with acks. Pipeline: a relay process publishes rows
of a PostgreSQL outbox; a consumer process handles each event in the inbox
(idempotency row + one effect row in the same transaction). Timed from the
commit of the outbox rows to the last effect row.
Goal: >= 1,500 events/s on this machine.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import aio_pika
from sqlalchemy import Column, Integer, Table, Uuid, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from bench.common import (
    AMQP_URL,
    Figure,
    Processes,
    create_database,
    drop_database,
    env_int,
    table,
)
from devtools.processes import ProcessSpec
from kit.contracts.base import Event
from kit.db import create_engine, create_sessionmaker, new_metadata
from kit.messaging import Broker, Consumer, Outbox, OutboxRelay, Topology, inbox_table, outbox_table
from kit.runtime import run_process

EVENTS = env_int("BENCH_EVENTS", 20_000)
GOAL_PER_S = 1500
SERVICE = "bench-consumer"

metadata = new_metadata()
outbox = outbox_table(metadata)
inbox = inbox_table(metadata)
effects = Table(
    "effects",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", Uuid, nullable=False),
)


class BenchHappenedV1(Event):
    name: ClassVar[str] = "bench.thing_happened.v1"

    n: int


INSERT_EFFECT = insert(effects)


async def handle(event: BenchHappenedV1, session: AsyncSession) -> None:
    await session.execute(INSERT_EFFECT, {"event_id": event.id})


# -- roles run in their own processes -------------------------------------------------


async def run_role(role: str, database_url: str, namespace: str) -> None:
    from kit.logging import configure_logging

    configure_logging(f"bench-{role}", "INFO", "json")
    engine = create_engine(database_url)
    broker = Broker(AMQP_URL, Topology(namespace), f"bench-{role}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    import signal

    loop.add_signal_handler(signal.SIGTERM, stop.set)
    if role == "relay":
        await OutboxRelay(create_sessionmaker(engine), outbox, broker).run(stop)
    else:
        consumer = Consumer(
            SERVICE,
            sessionmaker=create_sessionmaker(engine),
            engine=engine,
            inbox=inbox,
            broker=broker,
        )
        consumer.handler(BenchHappenedV1)(handle)
        await consumer.start()
        await stop.wait()
        await consumer.stop()
    await broker.close()
    await engine.dispose()


# -- baseline ---------------------------------------------------------------------------


async def raw_aio_pika(n: int) -> tuple[float, float]:
    """Publish n messages with confirms (batches of 500), then consume them with acks."""
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(
            f"bench-raw-{uuid.uuid4().hex[:6]}",
            durable=True,
            arguments={"x-queue-type": "quorum"},
        )
        body = BenchHappenedV1(n=0).model_dump_json().encode()
        started = time.perf_counter()
        for i in range(0, n, 500):
            await asyncio.gather(
                *(
                    channel.default_exchange.publish(
                        aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                        routing_key=queue.name,
                    )
                    for _ in range(min(500, n - i))
                )
            )
        publish_rate = n / (time.perf_counter() - started)

        consume_channel = await connection.channel()
        await consume_channel.set_qos(prefetch_count=500)
        consume_queue = await consume_channel.get_queue(queue.name)
        done = asyncio.Event()
        seen = 0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal seen
            await message.ack()
            seen += 1
            if seen == n:
                done.set()

        started = time.perf_counter()
        await consume_queue.consume(on_message)
        await done.wait()
        consume_rate = n / (time.perf_counter() - started)
        await channel.queue_delete(queue.name)
    return publish_rate, consume_rate


# -- pipeline ---------------------------------------------------------------------------


async def _count(session_url: str) -> int:
    engine = create_engine(session_url, pool_size=1)
    async with engine.connect() as conn:
        value = (await conn.execute(select(func.count()).select_from(effects))).scalar_one()
    await engine.dispose()
    return int(value)


async def pipeline(n: int) -> tuple[float, dict[str, float]]:
    name, url = await create_database("bench_pipeline")
    namespace = f"bench{uuid.uuid4().hex[:6]}."
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    work = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    processes = Processes(work, {"PYTHONUNBUFFERED": "1"})
    try:
        for role in ("consume", "relay"):
            processes.start(
                ProcessSpec(
                    role, [sys.executable, "-m", "bench.event_pipeline", role, url, namespace]
                )
            )
        for role, marker in (("consume", "consumer_started"), ("relay", "outbox_relay_started")):
            deadline = time.monotonic() + 60
            while marker not in (work / f"{role}.log").read_text(errors="replace"):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{role} did not start; see {work}")
                await asyncio.sleep(0.1)

        events = [BenchHappenedV1(n=i) for i in range(n)]
        async with create_sessionmaker(engine)() as session, session.begin():
            await Outbox(outbox).enqueue_many(session, events)
        started = time.perf_counter()
        while (done := await _count(url)) < n:
            if time.perf_counter() - started > 300:
                raise RuntimeError(f"only {done} of {n} events handled after 300 s")
            await asyncio.sleep(0.05)
        rate = n / (time.perf_counter() - started)
        memory = processes.rss_mb()
        if await _count(url) != n:
            raise RuntimeError("more effects than events: a duplicate got through")
        return rate, memory
    finally:
        processes.stop()
        await engine.dispose()
        await drop_database(name)
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            channel = await connection.channel()
            topology = Topology(namespace)
            await channel.queue_delete(topology.queue(SERVICE))
            await channel.queue_delete(topology.dead_letter_queue(SERVICE))
            await channel.exchange_delete(topology.events_exchange)
            await channel.exchange_delete(topology.dead_letter_exchange)


@dataclass(frozen=True)
class PipelineRun:
    events: int
    publish_rate: float
    consume_rate: float
    rate: float
    memory: dict[str, float]

    @property
    def raw(self) -> float:
        return min(self.publish_rate, self.consume_rate)

    def rows(self) -> list[list[str]]:
        return [
            ["raw aio-pika publish (confirms, 500 at a time)", f"{self.publish_rate:,.0f}", "", ""],
            ["raw aio-pika consume (acks, prefetch 500)", f"{self.consume_rate:,.0f}", "", ""],
            [
                "outbox -> RabbitMQ -> inbox handler",
                f"{self.rate:,.0f}",
                f"{self.rate / self.raw:.0%} of raw",
                "met" if self.rate >= GOAL_PER_S else "NOT met (goal 1,500/s)",
            ],
        ]

    def figure(self) -> Figure:
        return Figure(
            "event pipeline",
            f"{self.rate:,.0f} events/s outbox -> RabbitMQ -> inbox",
            f"raw aio-pika {self.raw:,.0f} msg/s (publish or consume, the slower)",
            f"{self.rate / self.raw:.0%}",
            f">= {GOAL_PER_S:,} events/s",
            self.rate >= GOAL_PER_S,
            {
                "events_per_s": self.rate,
                "raw_publish_per_s": self.publish_rate,
                "raw_consume_per_s": self.consume_rate,
            },
        )


def measure_run(n: int = EVENTS) -> PipelineRun:
    publish_rate, consume_rate = asyncio.run(raw_aio_pika(n))
    rate, memory = asyncio.run(pipeline(n))
    return PipelineRun(n, publish_rate, consume_rate, rate, memory)


def measure(n: int = EVENTS) -> tuple[list[list[str]], dict[str, float]]:
    result = measure_run(n)
    return result.rows(), result.memory


if __name__ == "__main__":
    if len(sys.argv) == 4:
        run_process(run_role(sys.argv[1], sys.argv[2], sys.argv[3]))
        sys.exit(0)
    count = int(os.environ.get("BENCH_EVENTS", EVENTS))
    result_rows, mem = measure(count)
    print(f"Event pipeline, {count:,} events, PostgreSQL + RabbitMQ\n")
    print(table(result_rows, ["path", "events/s", "vs raw", "goal 1,500/s"]))
    print("\nResident memory (MB):", {k: round(v) for k, v in mem.items()})
