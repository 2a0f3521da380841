"""The payments service against real PostgreSQL, RabbitMQ, localstripe and the real catalog.

``payments`` is the api in process (a migrated database of its own) whose Stripe
is a localstripe process and whose catalog is the real catalog api, served over
HTTP by uvicorn on a free port with a migrated database of its own, seeded
through the catalog's own coach API (and its read model fed the way the
clients service's events feed it). Tokens are signed by the catalog tests'
issuer, whose JWKS both services fetch over HTTP.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from catalog.main import build_app as build_catalog_app
from devtools import stripe_driver
from kit.db import create_engine, create_sessionmaker
from kit.messaging import Outbox
from payments import models
from payments.config import PaymentsSettings
from payments.main import build_app, stripe_gateway
from payments.reconciliation.service import Reconciler
from payments.webhooks.service import StripeEventProcessor
from tests.catalog.conftest import (
    Business,
    Catalog,
    Issuer,
    Person,
    catalog_settings,
    free_port,
    jwks_url,
)
from tests.support import infra
from tests.support.localstripe import (
    API_KEY,
    PUBLISHABLE_KEY,
    LocalStripe,
    localstripe_server,
)

__all__ = ["jwks_url", "localstripe_server"]  # fixtures, imported for these tests

API = "/api/v1/payments"
WEBHOOK_SECRET = "whsec_test_" + "s3cr3t" * 4


def sign(payload: bytes, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    """A ``Stripe-Signature`` header, made the way Stripe makes it."""
    return stripe_driver.sign(payload, secret, timestamp)


stripe_event = stripe_driver.stripe_event


@pytest.fixture
async def catalog_server(
    service_database: Callable[[str], Awaitable[str]],
    amqp_url: str,
    broker_namespace: infra.BrokerNamespace,
    jwks_url: tuple[str, Issuer],
) -> AsyncIterator[Catalog]:
    """The real catalog api, listening on a free port (payments calls it over HTTP)."""
    url = await service_database("catalog")
    jwks, issuer = jwks_url
    settings = catalog_settings(url, amqp_url, broker_namespace.prefix, jwks)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            build_catalog_app(settings),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="on",
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    engine = create_engine(url)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        yield Catalog(http, settings, engine, issuer)
    server.should_exit = True
    await task
    await engine.dispose()


@dataclass
class Payments:
    http: httpx.AsyncClient
    settings: PaymentsSettings
    engine: AsyncEngine
    stripe: LocalStripe
    catalog: Catalog
    sessionmaker: async_sessionmaker[AsyncSession] = field(init=False)

    def __post_init__(self) -> None:
        self.sessionmaker = create_sessionmaker(self.engine)

    # -- the buyer's side ---------------------------------------------------------

    async def order(
        self,
        offering_id: str,
        *,
        headers: dict[str, str] | None = None,
        key: str | None = None,
        **body: Any,
    ) -> httpx.Response:
        if headers is None and "email" not in body:
            body.setdefault("name", "Robin Buyer")
            body.setdefault("email", f"robin-{uuid.uuid4().hex[:8]}@example.com")
        return await self.http.post(
            f"{API}/orders",
            json={"offering_id": offering_id, **body},
            headers={"Idempotency-Key": key or f"key-{uuid.uuid4().hex}", **(headers or {})},
        )

    async def created_order(self, offering_id: str, **kwargs: Any) -> dict[str, Any]:
        response = await self.order(offering_id, **kwargs)
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def pay(
        self,
        created: dict[str, Any],
        payment_method_id: str,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        return await self.http.post(
            f"{API}/orders/{created['order']['id']}/pay",
            params={"access_token": created["access_token"]},
            json={"payment_method_id": payment_method_id},
            headers=headers or {},
        )

    async def get(self, created: dict[str, Any]) -> dict[str, Any]:
        response = await self.http.get(
            f"{API}/orders/{created['order']['id']}",
            params={"access_token": created["access_token"]},
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    # -- Stripe's side ------------------------------------------------------------------

    async def webhook(self, payload: bytes, signature: str | None) -> httpx.Response:
        headers = {"Content-Type": "application/json"}
        if signature is not None:
            headers["Stripe-Signature"] = signature
        return await self.http.post(f"{API}/webhooks/stripe", content=payload, headers=headers)

    async def process_events(self) -> int:
        """What the worker's job does: process the stored Stripe events."""
        gateway = stripe_gateway(self.settings)
        try:
            processor = StripeEventProcessor(
                self.sessionmaker, Outbox(models.outbox), gateway, self.settings.secret_key
            )
            return await processor.process_pending()
        finally:
            await gateway.close()

    async def reconcile(self) -> dict[str, int]:
        """What the worker's reconciliation job does."""
        gateway = stripe_gateway(self.settings)
        try:
            reconciler = Reconciler(
                self.sessionmaker,
                Outbox(models.outbox),
                gateway,
                after_seconds=self.settings.reconcile_after_seconds,
            )
            return await reconciler.run_once()
        finally:
            await gateway.close()

    # -- what the database holds ------------------------------------------------------

    async def outbox_events(self, name: str | None = None) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            query = select(models.outbox.c.name, models.outbox.c.payload).order_by(
                models.outbox.c.created_at
            )
            rows = (await conn.execute(query)).all()
        return [{"event": n, **json.loads(p)} for n, p in rows if name is None or n == name]

    async def counts(self) -> dict[str, int]:
        tables = ("orders", "customers", "cards", "payments", "stripe_events", "outbox")
        found = {}
        async with self.engine.connect() as conn:
            for name in tables:
                table = models.Base.metadata.tables[name]
                found[name] = int(
                    (await conn.execute(select(func.count()).select_from(table))).scalar_one()
                )
        return found

    async def order_row(self, order_id: str) -> models.Order:
        async with self.sessionmaker() as session:
            order = await session.get(models.Order, uuid.UUID(order_id))
        assert order is not None
        return order

    async def payment_intents_of(self, order_id: str) -> list[dict[str, Any]]:
        return [
            pi
            for pi in await self.stripe.list_all("payment_intents")
            if pi.get("metadata", {}).get("order_id") == order_id
        ]


def payments_settings(
    url: str, amqp_url: str, namespace: str, jwks: str, stripe: LocalStripe, catalog_url: str
) -> PaymentsSettings:
    return PaymentsSettings(
        database_url=url,
        amqp_url=amqp_url,
        broker_namespace=namespace,
        jwks_url=jwks,
        dev_mode=True,
        log_format="console",
        outbox_poll_interval=0.05,
        stripe_api_key=API_KEY,
        stripe_publishable_key=PUBLISHABLE_KEY,
        stripe_api_base=stripe.base_url,
        stripe_js_url=stripe.js_url,
        stripe_webhook_secret=WEBHOOK_SECRET,
        catalog_url=catalog_url,
        reconcile_after_seconds=0,
        stripe_events_poll_interval=0.05,
    )


@pytest.fixture
async def payments(
    service_database: Callable[[str], Awaitable[str]],
    amqp_url: str,
    broker_namespace: infra.BrokerNamespace,
    jwks_url: tuple[str, Issuer],
    localstripe_server: LocalStripe,
    catalog_server: Catalog,
) -> AsyncIterator[Payments]:
    url = await service_database("payments")
    jwks, _issuer = jwks_url
    settings = payments_settings(
        url,
        amqp_url,
        broker_namespace.prefix,
        jwks,
        localstripe_server,
        str(catalog_server.http.base_url).rstrip("/"),
    )
    app = build_app(settings)
    engine = create_engine(url)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://payments", timeout=30
        ) as http:
            yield Payments(http, settings, engine, localstripe_server, catalog_server)
    await engine.dispose()


@dataclass
class Shop:
    """A business with a published offering of each kind a test needs."""

    business: Business
    paid: dict[str, Any]
    free: dict[str, Any]


@pytest.fixture
async def shop(payments: Payments) -> Shop:
    catalog = payments.catalog
    business = await catalog.business("Harbour Pilates")
    paid = await catalog.published_offering(business, name="Reformer course", price_minor=12000)
    free = await catalog.published_offering(
        business, name="Intro call", billing={"type": "free"}, price_minor=0
    )
    return Shop(business, paid, free)


def person_headers(catalog: Catalog, person: Person, email: str) -> dict[str, str]:
    """A logged-in buyer's Authorization header (with the email claim a real token has)."""
    from tests.support import tokens

    token = tokens.valid(
        catalog.issuer.key, catalog.issuer.kid, sub=str(person.account_id), email=email, name="Kim"
    )
    return {"Authorization": f"Bearer {token}"}
