"""What an api or worker process of a service holds: settings, database, broker.

Also the worker's main loop: the consumer, the outbox relay and periodic
jobs run side by side until SIGTERM/SIGINT, then stop cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import uvloop
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from kit.aio import freeze_startup_heap, wait_for_stop
from kit.db import create_engine, create_sessionmaker, database_reachable
from kit.logging import get_logger
from kit.messaging.broker import Broker, BrokerUnavailable, Topology
from kit.messaging.inbox import Consumer
from kit.messaging.outbox import OutboxRelay
from kit.metrics import start_metrics_server
from kit.settings import ServiceSettings

log = get_logger(__name__)

# How often a worker reads its dead-letter queue's depth (the clientele_dlq_messages gauge).
DLQ_MEASURE_SECONDS = 30.0


@dataclass
class ServiceContext:
    settings: ServiceSettings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    broker: Broker

    @classmethod
    def create(cls, settings: ServiceSettings, process_name: str) -> ServiceContext:
        engine = create_engine(settings.database_url, pool_size=settings.db_pool_size)
        broker = Broker(
            settings.amqp_url, Topology(settings.broker_namespace), process_name=process_name
        )
        return cls(settings, engine, create_sessionmaker(engine), broker)

    async def close(self) -> None:
        await self.broker.close()
        await self.engine.dispose()


@dataclass
class PeriodicJob:
    name: str
    run: Callable[[], Awaitable[object]]
    interval: float

    async def loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                result = await self.run()
                if result:
                    log.info("job_ran", job=self.name, result=result)
            except Exception as exc:
                log.warning("job_failed", job=self.name, error=f"{type(exc).__name__}: {exc}")
            await wait_for_stop(stop, self.interval)


@dataclass
class Worker:
    context: ServiceContext
    consumer: Consumer | None = None
    relay: OutboxRelay | None = None
    jobs: list[PeriodicJob] = field(default_factory=list)
    # Loops that run until stop (e.g. the email sender).
    loops: list[Callable[[asyncio.Event], Coroutine[Any, Any, None]]] = field(default_factory=list)

    def standard_jobs(self) -> None:
        if self.relay is not None:
            self.jobs.append(PeriodicJob("purge_outbox", self.relay.purge_published, 300))
        if self.consumer is not None:
            consumer = self.consumer
            self.jobs.append(PeriodicJob("purge_inbox", consumer.purge_inbox, 3600))

            async def measure_dead_letters() -> None:  # a gauge, nothing to log
                await consumer.measure_dead_letters()

            self.jobs.append(
                PeriodicJob("measure_dead_letters", measure_dead_letters, DLQ_MEASURE_SECONDS)
            )

    async def _wait_for_dependencies(self, stop: asyncio.Event) -> bool:
        delay = 1.0
        while not stop.is_set():
            db_ok = await database_reachable(self.context.engine)
            broker_ok = await self.context.broker.ping()
            if db_ok and broker_ok:
                return True
            log.warning("waiting_for_dependencies", database=db_ok, broker=broker_ok)
            await wait_for_stop(stop, delay)
            delay = min(delay * 2, 10.0)
        return False

    async def run(self, stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        settings = self.context.settings
        metrics = None
        try:
            # Up before the dependencies: a worker waiting for its database still answers.
            metrics = start_metrics_server(settings.metrics_port, settings.metrics_host)
            if not await self._wait_for_dependencies(stop):
                return
            if self.consumer is not None:
                while True:
                    try:
                        await self.consumer.start()
                        break
                    except BrokerUnavailable as exc:
                        log.warning("consumer_start_failed", error=str(exc))
                        await asyncio.sleep(2)
            tasks = [asyncio.create_task(job.loop(stop)) for job in self.jobs]
            if self.relay is not None:
                tasks.append(asyncio.create_task(self.relay.run(stop)))
            tasks.extend(asyncio.create_task(run(stop)) for run in self.loops)
            freeze_startup_heap()
            log.info("worker_started")
            await stop.wait()
            log.info("worker_stopping")
            if self.consumer is not None:
                await self.consumer.stop()
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            if metrics is not None:
                await asyncio.to_thread(metrics.close)
            await self.context.close()
            log.info("worker_stopped")


def run_process(main: Coroutine[Any, Any, None]) -> None:
    """Run a worker's main coroutine on uvloop (as uvicorn runs the apis)."""
    uvloop.run(main)
