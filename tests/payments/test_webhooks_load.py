"""Stripe webhooks under load and through a database outage, with real workers.

The orders are made the fast way, still realistically: the PaymentIntents are
real localstripe PaymentIntents (created and confirmed with a test card, so
each webhook carries the ``data.object`` Stripe would send), and the order
rows that own them are inserted straight into the payments database with the
ORM (what ``/pay`` would have left behind: pending, PaymentIntent attached),
skipping the catalog quote and the SetupIntent step that other tests cover.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest
import uvicorn
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from kit.db import utcnow
from kit.messaging import Topology, declare_service_queue
from payments import models
from payments.main import build_app
from payments.webhooks import endpoints as webhook_endpoints
from payments.worker import build_worker
from tests.catalog.conftest import free_port, wait_until
from tests.payments.conftest import API, Payments, sign, stripe_event
from tests.support import infra
from tests.support.localstripe import API_KEY, TEST_CARD
from tests.support.netproxy import CuttableProxy

ROOT = Path(__file__).resolve().parents[2]
SUCCEEDED = "payment_intent.succeeded"
ORDER_PAID = "payments.order_paid.v1"
LISTENER = "payments-load-listener"


@dataclass(frozen=True)
class PaidIntent:
    order_id: uuid.UUID
    intent: dict[str, Any]


async def paid_intents(payments: Payments, count: int) -> list[PaidIntent]:
    """``count`` pending orders, each with a PaymentIntent that succeeded in localstripe
    (whose webhook has not been delivered yet)."""
    business_id, offering_id, version_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with httpx.AsyncClient(
        base_url=payments.stripe.base_url, auth=(API_KEY, ""), timeout=60
    ) as stripe:
        method = await stripe.post(
            "/v1/payment_methods",
            data={
                "type": "card",
                "card[number]": TEST_CARD,
                "card[exp_month]": "12",
                "card[exp_year]": "2034",
                "card[cvc]": "123",
            },
        )
        assert method.status_code == 200, method.text
        payment_method = method.json()["id"]
        limit = asyncio.Semaphore(16)

        async def intent_for(order_id: uuid.UUID) -> PaidIntent:
            async with limit:
                answer = await stripe.post(
                    "/v1/payment_intents",
                    data={
                        "amount": "12000",
                        "currency": "usd",
                        "payment_method": payment_method,
                        "confirm": "true",
                        "metadata[order_id]": str(order_id),
                    },
                )
            assert answer.status_code == 200, answer.text
            assert answer.json()["status"] == "succeeded", answer.text
            return PaidIntent(order_id, answer.json())

        made = await asyncio.gather(*(intent_for(uuid.uuid4()) for _ in range(count)))
    now = utcnow()
    async with payments.sessionmaker() as session, session.begin():
        session.add_all(
            models.Order(
                id=paid.order_id,
                business_id=business_id,
                business_name="Harbour Pilates",
                offering_id=offering_id,
                offering_version_id=version_id,
                offering_name="Reformer course",
                kind="course",
                details={},
                billing={"type": "one_time"},
                buyer_email=f"buyer-{n}@example.com",
                buyer_name=f"Buyer {n}",
                amount_minor=12000,
                currency="USD",
                discount_minor=0,
                status=models.PENDING,
                stripe_payment_intent_id=paid.intent["id"],
                idempotency_key=f"load-{paid.order_id}",
                created_at=now,
                updated_at=now,
                payment_started_at=now,
            )
            for n, paid in enumerate(made)
        )
    return made


async def table_count(payments: Payments, table: Any, *where: Any) -> int:
    async with payments.engine.connect() as conn:
        query = select(func.count()).select_from(table).where(*where)
        return int((await conn.execute(query)).scalar_one())


async def stored_event_ids(payments: Payments) -> set[str]:
    async with payments.engine.connect() as conn:
        rows = await conn.execute(select(models.StripeEvent.stripe_event_id))
        return set(rows.scalars())


async def assert_all_paid_once(payments: Payments, orders: list[PaidIntent]) -> None:
    count = len(orders)
    assert await table_count(payments, models.Payment.__table__) == count
    outbox = models.outbox
    assert await table_count(payments, outbox, outbox.c.name == ORDER_PAID) == count
    async with payments.engine.connect() as conn:
        payloads = (
            await conn.execute(select(outbox.c.payload).where(outbox.c.name == ORDER_PAID))
        ).scalars()
        paid_ids = {json.loads(p)["order_id"] for p in payloads}
    assert paid_ids == {str(o.order_id) for o in orders}
    order = models.Order
    assert await table_count(payments, order.__table__, order.status == models.PAID) == count
    assert await table_count(payments, order.__table__, order.status != models.PAID) == 0


def _worker_env(payments: Payments) -> dict[str, str]:
    settings = payments.settings
    return {
        **os.environ,
        "CLIENTELE_DEV": "1",
        "LOG_FORMAT": "json",
        "PYTHONUNBUFFERED": "1",
        "AMQP_URL": settings.amqp_url,
        "BROKER_NAMESPACE": settings.broker_namespace,
        "JWKS_URL": settings.jwks_url,
        "PAYMENTS_DATABASE_URL": settings.database_url,
        "PAYMENTS_STRIPE_API_KEY": settings.stripe_api_key,
        "PAYMENTS_STRIPE_API_BASE": settings.stripe_api_base,
        "PAYMENTS_STRIPE_WEBHOOK_SECRET": settings.stripe_webhook_secret,
        "PAYMENTS_STRIPE_EVENTS_POLL_INTERVAL": "0.05",
        "PAYMENTS_OUTBOX_POLL_INTERVAL": "0.05",
        # Only the webhooks settle here: reconciliation would settle from Stripe too.
        "PAYMENTS_RECONCILE_AFTER_SECONDS": "86400",
    }


@contextmanager
def worker_processes(payments: Payments, count: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``count`` real ``python -m payments.worker`` processes on the test's database and
    broker namespace, started and waited for (``worker_started``), stopped afterwards."""
    work = Path(tempfile.mkdtemp(prefix="payments-workers-"))
    env = _worker_env(payments)
    procs: list[subprocess.Popen[bytes]] = []
    logs = [work / f"worker-{n}.log" for n in range(count)]
    try:
        for log in logs:
            with log.open("ab") as out:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "payments.worker"],
                        cwd=ROOT,
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )
        deadline = time.monotonic() + 60
        for proc, log in zip(procs, logs, strict=True):
            while "worker_started" not in log.read_text(errors="replace"):
                assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
                assert time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
                time.sleep(0.1)
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc, log in zip(procs, logs, strict=True):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            text = log.read_text(errors="replace")
            assert "Traceback" not in text, text[-3000:]
            log.unlink()
        work.rmdir()


@asynccontextmanager
async def order_paid_listener(
    payments: Payments, broker_namespace: infra.BrokerNamespace
) -> AsyncIterator[aio_pika.abc.AbstractQueue]:
    """A queue bound to ``payments.order_paid.v1`` (what clients and notifications have)."""
    broker_namespace.services.add(LISTENER)
    connection = await aio_pika.connect(payments.settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        yield await declare_service_queue(
            channel, Topology(broker_namespace.prefix), LISTENER, [ORDER_PAID], 5
        )


async def drain(queue: aio_pika.abc.AbstractQueue, expected: int) -> list[str]:
    """Every order id on the queue (waits for ``expected`` messages, then a little more)."""
    found: list[str] = []
    deadline = time.monotonic() + 60
    quiet_since: float | None = None
    while time.monotonic() < deadline:
        message = await queue.get(fail=False, no_ack=True)
        if message is None:
            if len(found) >= expected:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since > 1.0:
                    break
            await asyncio.sleep(0.05)
            continue
        quiet_since = None
        found.append(json.loads(message.body)["order_id"])
    return found


def load_size() -> int:
    default = 1000 if os.environ.get("CLIENTELE_FULL_TESTS") == "1" else 200
    return int(os.environ.get("CLIENTELE_WEBHOOK_LOAD_PAYMENTS", default))


async def test_payments_each_delivered_three_times_across_two_workers_grant_once(
    payments: Payments, broker_namespace: infra.BrokerNamespace
) -> None:
    """N payments, each delivered three times concurrently, processed by two real
    worker processes: exactly N grants.

    N is 1,000 with ``CLIENTELE_FULL_TESTS=1`` (about a minute on two cores), else
    200 to keep the suite quick; ``CLIENTELE_WEBHOOK_LOAD_PAYMENTS`` sets it. Of the
    three deliveries of a payment, two are the same Stripe event (a redelivery,
    folded at intake by the unique event id) and one is a second event for the same
    PaymentIntent (folded only by settlement, with both workers racing for it).
    All 3N are posted at once (64 in flight) while both workers run.
    """
    count = load_size()
    orders = await paid_intents(payments, count)
    deliveries: list[bytes] = []
    for paid in orders:
        first = stripe_event(SUCCEEDED, paid.intent)
        deliveries += [first, first, stripe_event(SUCCEEDED, paid.intent)]
    random.Random(7).shuffle(deliveries)
    in_flight = asyncio.Semaphore(64)

    async def deliver(payload: bytes) -> int:
        async with in_flight:
            return (await payments.webhook(payload, sign(payload))).status_code

    async with order_paid_listener(payments, broker_namespace) as queue:
        with worker_processes(payments, 2):
            answers = await asyncio.gather(*(deliver(p) for p in deliveries))
            assert answers == [200] * len(deliveries)
            assert await table_count(payments, models.StripeEvent.__table__) == 2 * count

            async def all_processed() -> bool:
                pending = models.StripeEvent.processed_at.is_(None)
                return await table_count(payments, models.StripeEvent.__table__, pending) == 0

            await wait_until(all_processed, 120, "every stored event processed")
            published = await drain(queue, count)

    await assert_all_paid_once(payments, orders)
    async with payments.engine.connect() as conn:
        outcomes = dict(
            (
                await conn.execute(
                    select(models.StripeEvent.outcome, func.count()).group_by(
                        models.StripeEvent.outcome
                    )
                )
            ).all()
        )
    assert outcomes == {"paid": count, "already_paid": count}
    assert sorted(published) == sorted(str(o.order_id) for o in orders)


@asynccontextmanager
async def served(app: Any) -> AsyncIterator[str]:
    """An ASGI app behind uvicorn on a free port (real HTTP answers, 5xx included)."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def test_webhooks_while_the_database_is_down_never_get_a_2xx_and_all_settle_after(
    payments: Payments, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The api (over real HTTP) and a worker reach PostgreSQL through a cuttable proxy.

    A burst is cut in the middle: every event answered 2xx is stored. With the
    database away every answer is a 5xx and nothing is stored. After it is back,
    Stripe's retries (the same events, signed again) get 200 and the worker, which
    rode out the outage, settles every order once. (The intake's database timeout is
    cut from 5 s to 2 s to keep the test short.)
    """
    monkeypatch.setattr(webhook_endpoints, "INTAKE_TIMEOUT_SECONDS", 2.0)
    orders = await paid_intents(payments, 60)
    events = [stripe_event(SUCCEEDED, paid.intent) for paid in orders]
    event_ids = [json.loads(e)["id"] for e in events]
    url = make_url(payments.settings.database_url)
    proxy = await CuttableProxy(url.host or "127.0.0.1", url.port or 5432).start()
    via_proxy = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    settings = payments.settings.model_copy(
        update={"database_url": via_proxy, "reconcile_after_seconds": 86400}
    )
    stop = asyncio.Event()
    worker = asyncio.create_task(build_worker(settings).run(stop))
    try:
        async with (
            served(build_app(settings)) as base,
            httpx.AsyncClient(base_url=base, timeout=30) as http,
        ):

            async def post(payload: bytes) -> int:
                answer = await http.post(
                    f"{API}/webhooks/stripe",
                    content=payload,
                    headers={"Content-Type": "application/json", "Stripe-Signature": sign(payload)},
                )
                return answer.status_code

            # 1. A burst with the database cut while it is in flight.
            async def cut_soon() -> None:
                await asyncio.sleep(0.02)
                proxy.cut()

            burst = events[:30]
            *answers, _ = await asyncio.gather(*(post(p) for p in burst), cut_soon())
            assert set(answers) <= {200, 503}, answers
            stored = await stored_event_ids(payments)  # read directly, not through the proxy
            answered_ok = {event_ids[i] for i, status in enumerate(answers) if status == 200}
            assert answered_ok <= stored, "a 2xx for an event that was not stored"

            # 2. Database away: every answer is a 5xx, nothing more is stored. (At once:
            # each intake keeps trying its insert for its whole timeout before the 503.)
            down = await asyncio.gather(*(post(p) for p in events[30:] + burst))
            assert set(down) == {503}, down
            assert await stored_event_ids(payments) == stored

            # 3. Back: Stripe retries each event (newly signed), and gets 200s.
            proxy.restore()
            retried = await asyncio.gather(*(post(p) for p in events))
            assert retried == [200] * len(events)
            assert await stored_event_ids(payments) == set(event_ids)

            async def all_paid() -> bool:
                return await table_count(payments, models.Payment.__table__) == len(orders)

            await wait_until(all_paid, 60, "the worker settled every order after the outage")
    finally:
        stop.set()
        await worker
        await proxy.close()
    await assert_all_paid_once(payments, orders)
    unprocessed = models.StripeEvent.processed_at.is_(None)
    assert await table_count(payments, models.StripeEvent.__table__, unprocessed) == 0
