"""Runs an outbox relay that dies (os._exit) after the broker confirmed a batch
and before the rows are marked: what a kill -9 at the worst moment does."""

from __future__ import annotations

import asyncio
import os
import sys

from kit.db import create_engine, create_sessionmaker
from kit.messaging import Broker, OutboxRelay, Topology
from tests.kit.messaging_app import outbox


async def main(database_url: str, amqp_url: str, namespace: str, expected: int) -> None:
    engine = create_engine(database_url)
    relay = OutboxRelay(
        create_sessionmaker(engine), outbox, Broker(amqp_url, Topology(namespace), "crashing")
    )
    confirmed = 0
    publish = relay._publish

    async def publish_then_die_after_last(exchange, row):  # type: ignore[no-untyped-def]
        nonlocal confirmed
        await publish(exchange, row)
        confirmed += 1
        if confirmed == expected:
            os._exit(17)

    relay._publish = publish_then_die_after_last  # type: ignore[method-assign]
    await relay.relay_once()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
    sys.exit(0)
