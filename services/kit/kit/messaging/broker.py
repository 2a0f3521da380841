"""RabbitMQ connections and topology, declared in code at start.

One durable topic exchange for events, one direct dead-letter exchange, and
per service one durable quorum queue (bound to the event names it handles,
with a delivery limit) plus ``<service>.dlq``. Publishing and consuming use
separate robust connections, so a blocked publisher never stalls consumers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractQueue,
    AbstractRobustConnection,
)

from kit.logging import get_logger

log = get_logger(__name__)

HEARTBEAT_SECONDS = 30
RECONNECT_INTERVAL_SECONDS = 2


class BrokerUnavailable(RuntimeError):
    pass


@dataclass(frozen=True)
class Topology:
    """Names of exchanges and queues. ``namespace`` isolates test runs on one broker."""

    namespace: str = ""

    @property
    def events_exchange(self) -> str:
        return f"{self.namespace}clientele.events"

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.namespace}clientele.dlx"

    def queue(self, service: str) -> str:
        return f"{self.namespace}{service}"

    def dead_letter_queue(self, service: str) -> str:
        return f"{self.namespace}{service}.dlq"


def _with_params(url: str, connection_name: str) -> str:
    separator = "&" if "?" in url else "?"
    return (
        f"{url}{separator}heartbeat={HEARTBEAT_SECONDS}"
        f"&reconnect_interval={RECONNECT_INTERVAL_SECONDS}&name={connection_name}"
    )


class Broker:
    """Holds the publish and consume connections of one process."""

    def __init__(self, amqp_url: str, topology: Topology, process_name: str) -> None:
        self.amqp_url = amqp_url
        self.topology = topology
        self.process_name = process_name
        self._publish_connection: AbstractRobustConnection | None = None
        self._consume_connection: AbstractRobustConnection | None = None
        self._publish_channel: AbstractChannel | None = None
        self._events_exchange: AbstractExchange | None = None
        self._lock = asyncio.Lock()

    async def _connect(self, role: str, timeout: float) -> AbstractRobustConnection:
        url = _with_params(self.amqp_url, f"{self.process_name}-{role}")
        try:
            return await aio_pika.connect_robust(url, timeout=timeout)
        except Exception as exc:  # aiormq raises several unrelated types
            raise BrokerUnavailable(f"RabbitMQ is not reachable: {exc}") from exc

    async def publish_connection(self, timeout: float = 10) -> AbstractRobustConnection:
        async with self._lock:
            if self._publish_connection is None:
                self._publish_connection = await self._connect("publish", timeout)
            return self._publish_connection

    async def consume_connection(self, timeout: float = 10) -> AbstractRobustConnection:
        async with self._lock:
            if self._consume_connection is None:
                self._consume_connection = await self._connect("consume", timeout)
            return self._consume_connection

    async def events_exchange(self) -> AbstractExchange:
        """The events exchange on a channel with publisher confirms; a returned
        (unroutable) message raises instead of passing silently."""
        if self._events_exchange is None or self._publish_channel is None:
            connection = await self.publish_connection()
            self._publish_channel = await connection.channel(
                publisher_confirms=True, on_return_raises=True
            )
            self._events_exchange = await declare_exchanges(self._publish_channel, self.topology)
        return self._events_exchange

    def is_connected(self) -> bool:
        connections = [c for c in (self._publish_connection, self._consume_connection) if c]
        return bool(connections) and all(not c.is_closed for c in connections)

    async def ping(self, timeout: float = 3) -> bool:
        """Readiness: the broker accepts a connection (opened once, then watched)."""
        try:
            connection = await asyncio.wait_for(self.publish_connection(timeout), timeout)
        except (BrokerUnavailable, TimeoutError):
            async with self._lock:
                self._publish_connection = None
            return False
        return not connection.is_closed and connection.connected.is_set()

    async def close(self) -> None:
        for connection in (self._publish_connection, self._consume_connection):
            if connection is not None:
                await connection.close()
        self._publish_connection = self._consume_connection = None
        self._publish_channel = None
        self._events_exchange = None


async def declare_exchanges(channel: AbstractChannel, topology: Topology) -> AbstractExchange:
    events = await channel.declare_exchange(
        topology.events_exchange, aio_pika.ExchangeType.TOPIC, durable=True
    )
    await channel.declare_exchange(
        topology.dead_letter_exchange, aio_pika.ExchangeType.DIRECT, durable=True
    )
    return events


async def declare_service_queue(
    channel: AbstractChannel,
    topology: Topology,
    service: str,
    routing_keys: Iterable[str],
    delivery_limit: int,
) -> AbstractQueue:
    """The service's quorum queue, its bindings, and its dead-letter queue."""
    events = await declare_exchanges(channel, topology)
    dlx = await channel.get_exchange(topology.dead_letter_exchange, ensure=False)
    queue_name = topology.queue(service)
    dead_letters = await channel.declare_queue(
        topology.dead_letter_queue(service), durable=True, arguments={"x-queue-type": "quorum"}
    )
    await dead_letters.bind(dlx, routing_key=queue_name)
    queue = await channel.declare_queue(
        queue_name,
        durable=True,
        arguments={
            "x-queue-type": "quorum",
            "x-delivery-limit": delivery_limit,
            "x-dead-letter-exchange": topology.dead_letter_exchange,
            "x-dead-letter-routing-key": queue_name,
            # Dead-lettering itself must not lose messages.
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        },
    )
    for key in routing_keys:
        await queue.bind(events, routing_key=key)
    return queue
