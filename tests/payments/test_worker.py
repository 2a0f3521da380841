"""The real payments worker (build_worker) on the broker: it relays order events and
processes Stripe's webhooks by itself."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import pytest

from kit.messaging import Topology, declare_service_queue
from payments.worker import build_worker
from tests.catalog.conftest import wait_until
from tests.payments.conftest import Payments, Shop, sign, stripe_event
from tests.support import infra
from tests.support.localstripe import THREE_D_SECURE_CARD

LISTENER = "payments-test-listener"
EVENTS = ["payments.order_paid.v1"]


@pytest.fixture
async def listener(
    payments: Payments, amqp_url: str, broker_namespace: infra.BrokerNamespace
) -> AsyncIterator[aio_pika.abc.AbstractQueue]:
    """A queue bound to the payments events, as a consumer (clients, notifications) has."""
    broker_namespace.services.add(LISTENER)
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    queue = await declare_service_queue(
        channel, Topology(broker_namespace.prefix), LISTENER, EVENTS, 5
    )
    yield queue
    await connection.close()


@pytest.fixture
async def running_worker(payments: Payments, listener: Any) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(build_worker(payments.settings).run(stop))
    yield
    stop.set()
    await task


async def received(queue: aio_pika.abc.AbstractQueue, count: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    async def enough() -> bool:
        message = await queue.get(fail=False)
        if message is not None:
            await message.ack()
            found.append({"event": message.type, **json.loads(message.body)})
        return len(found) >= count

    await wait_until(enough, 20, f"{count} payments events on the broker")
    return found


@pytest.mark.usefixtures("running_worker")
async def test_the_worker_relays_and_settles_webhooks(
    payments: Payments, shop: Shop, listener: aio_pika.abc.AbstractQueue
) -> None:
    free = await payments.created_order(shop.free["id"])
    [event] = await received(listener, 1)
    assert (event["event"], event["order_id"]) == ("payments.order_paid.v1", free["order"]["id"])
    assert event["business_id"] == str(shop.business.id)

    created = await payments.created_order(shop.paid["id"])
    payment_method = await payments.stripe.confirm_card_setup(
        created["stripe"]["client_secret"], THREE_D_SECURE_CARD
    )
    answer = await payments.pay(created, payment_method)
    await payments.stripe.authenticate(answer.json()["client_secret"])
    [intent] = await payments.payment_intents_of(created["order"]["id"])
    payload = stripe_event("payment_intent.succeeded", intent)
    assert (await payments.webhook(payload, sign(payload))).status_code == 200

    async def paid() -> bool:
        return (await payments.get(created))["status"] == "paid"

    await wait_until(paid, 20, "the worker settled the webhook")
    [event] = await received(listener, 1)
    assert (event["event"], event["order_id"]) == ("payments.order_paid.v1", created["order"]["id"])
    assert event["amount_minor"] == 12000
