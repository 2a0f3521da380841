"""The catalog service against real PostgreSQL and RabbitMQ.

``catalog`` is the api in process (a migrated database of its own, tokens
signed by a test issuer whose JWKS is served over HTTP where the settings say)
with helpers that feed the read model the way the clients service's events
do. ``running_worker`` adds the real worker (relay and consumer) on the broker.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import httpx
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.utils import base64url_encode
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from catalog import models
from catalog.config import CatalogSettings
from catalog.handlers import SERVICE, handle
from catalog.main import build_app
from catalog.worker import build_worker
from kit.contracts.base import Event
from kit.contracts.clients import (
    BusinessCreatedV1,
    ClientAddedV1,
    ClientArchivedV1,
    GroupCreatedV1,
    GroupMemberAddedV1,
    GroupMemberRemovedV1,
)
from kit.db import create_engine, create_sessionmaker
from kit.messaging import Broker, Topology, declare_service_queue
from kit.runtime import Worker
from tests.support import infra, tokens

API = "/api/v1/catalog"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_until(
    predicate: Callable[[], Awaitable[bool]], timeout: float = 15, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what}: not reached in {timeout}s")


class Issuer:
    """Signs access tokens like the clients service, with a key made for this test."""

    def __init__(self) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.kid = f"test-{uuid.uuid4().hex[:8]}"

    def jwks(self) -> dict[str, Any]:
        public = self.key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        jwk = {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": base64url_encode(public).decode(),
            "kid": self.kid,
            "alg": "EdDSA",
            "use": "sig",
        }
        return {"keys": [jwk]}

    def headers(
        self, account_id: uuid.UUID, staff: dict[uuid.UUID, str] | None = None
    ) -> dict[str, str]:
        token = tokens.valid(
            self.key,
            self.kid,
            sub=str(account_id),
            staff={str(b): role for b, role in (staff or {}).items()},
        )
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def jwks_url() -> AsyncIterator[tuple[str, Issuer]]:
    issuer = Issuer()

    async def serve(_request: web.Request) -> web.Response:
        return web.json_response(issuer.jwks())

    app = web.Application()
    app.router.add_get("/jwks.json", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}/jwks.json", issuer
    await runner.cleanup()


@dataclass
class Business:
    id: uuid.UUID
    slug: str
    name: str
    coach: dict[str, str]  # the owner's Authorization header

    def url(self, path: str) -> str:
        return f"{API}/businesses/{self.id}{path}"


@dataclass
class Person:
    account_id: uuid.UUID
    headers: dict[str, str]
    client_ids: dict[uuid.UUID, uuid.UUID] = field(default_factory=dict)  # business -> client


@dataclass
class Catalog:
    http: httpx.AsyncClient
    settings: CatalogSettings
    engine: AsyncEngine
    issuer: Issuer
    sessionmaker: async_sessionmaker[AsyncSession] = field(init=False)
    clock: int = 0

    def __post_init__(self) -> None:
        self.sessionmaker = create_sessionmaker(self.engine)

    def now(self) -> datetime:
        """Strictly increasing event times, so the newest fact is the last one applied."""
        self.clock += 1
        return datetime.now(UTC) + timedelta(milliseconds=self.clock)

    # -- the read model, as the clients service's events make it --------------------

    async def apply(self, *events: Event) -> None:
        async with self.sessionmaker() as session, session.begin():
            for event in events:
                await handle(event, session)

    async def business(self, name: str = "Casey Coaching") -> Business:
        business_id = uuid.uuid4()
        slug = f"{name.lower().replace(' ', '-')}-{business_id.hex[:6]}"
        await self.apply(
            BusinessCreatedV1(
                business_id=business_id,
                occurred_at=self.now(),
                business_name=name,
                slug=slug,
                owner_account_id=uuid.uuid4(),
                owner_email="owner@example.com",
            )
        )
        coach = self.issuer.headers(uuid.uuid4(), {business_id: "owner"})
        return Business(business_id, slug, name, coach)

    def person(self) -> Person:
        account_id = uuid.uuid4()
        return Person(account_id, self.issuer.headers(account_id))

    def client_added(self, business: Business, person: Person) -> ClientAddedV1:
        client_id = person.client_ids.setdefault(business.id, uuid.uuid4())
        return ClientAddedV1(
            business_id=business.id,
            occurred_at=self.now(),
            client_id=client_id,
            account_id=person.account_id,
            email=f"{person.account_id.hex[:8]}@example.com",
            display_name="Pat Client",
            business_name=business.name,
            source="added",
        )

    async def add_client(self, business: Business, person: Person | None = None) -> Person:
        person = person or self.person()
        await self.apply(self.client_added(business, person))
        return person

    async def archive_client(self, business: Business, person: Person) -> None:
        await self.apply(
            ClientArchivedV1(
                business_id=business.id,
                occurred_at=self.now(),
                client_id=person.client_ids[business.id],
                account_id=person.account_id,
            )
        )

    async def group(self, business: Business, name: str = "Morning yoga") -> uuid.UUID:
        group_id = uuid.uuid4()
        await self.apply(
            GroupCreatedV1(
                business_id=business.id,
                occurred_at=self.now(),
                group_id=group_id,
                group_name=name,
            )
        )
        return group_id

    def member_event(
        self, business: Business, group_id: uuid.UUID, person: Person, *, added: bool = True
    ) -> Event:
        kind = GroupMemberAddedV1 if added else GroupMemberRemovedV1
        return kind(
            business_id=business.id,
            occurred_at=self.now(),
            group_id=group_id,
            client_id=person.client_ids[business.id],
            account_id=person.account_id,
        )

    async def join(self, business: Business, group_id: uuid.UUID, person: Person) -> None:
        await self.apply(self.member_event(business, group_id, person))

    async def leave(self, business: Business, group_id: uuid.UUID, person: Person) -> None:
        await self.apply(self.member_event(business, group_id, person, added=False))

    # -- the catalog ---------------------------------------------------------------

    async def create_offering(self, business: Business, **fields: Any) -> dict[str, Any]:
        response = await self.http.post(
            business.url("/offerings"), json=offering_body(**fields), headers=business.coach
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def publish(self, business: Business, offering_id: str) -> dict[str, Any]:
        response = await self.http.post(
            business.url(f"/offerings/{offering_id}/publish"), headers=business.coach
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def published_offering(self, business: Business, **fields: Any) -> dict[str, Any]:
        offering = await self.create_offering(business, **fields)
        return await self.publish(business, offering["id"])

    async def create_collection(self, business: Business, **fields: Any) -> dict[str, Any]:
        body = {"name": "Programs", **fields}
        response = await self.http.post(
            business.url("/collections"), json=body, headers=business.coach
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def quote(
        self, offering_id: str, headers: dict[str, str] | None = None, code: str | None = None
    ) -> httpx.Response:
        body: dict[str, Any] = {"offering_id": offering_id}
        if code is not None:
            body["discount_code"] = code
        return await self.http.post(f"{API}/quotes", json=body, headers=headers or {})

    async def outbox_events(self, name: str | None = None) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            query = select(models.outbox.c.name, models.outbox.c.payload).order_by(
                models.outbox.c.created_at
            )
            rows = (await conn.execute(query)).all()
        return [{"event": n, **json.loads(p)} for n, p in rows if name is None or n == name]

    async def counts(self) -> dict[str, int]:
        """Rows per catalog table (to show that a refused request changed nothing)."""
        tables = ("offerings", "offering_versions", "collections", "discount_codes", "outbox")
        found = {}
        async with self.engine.connect() as conn:
            for name in tables:
                table = models.Base.metadata.tables[name]
                found[name] = int(
                    (await conn.execute(select(func.count()).select_from(table))).scalar_one()
                )
        return found


def offering_body(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Strength program",
        "description": "Eight weeks, three sessions a week.",
        "kind": "course",
        "billing": {"type": "one_time"},
        "price_minor": 12000,
        "currency": "usd",
        "visibility": "public",
    }
    body.update(fields)
    return body


def catalog_settings(url: str, amqp_url: str, namespace: str, jwks: str) -> CatalogSettings:
    return CatalogSettings(
        database_url=url,
        amqp_url=amqp_url,
        broker_namespace=namespace,
        jwks_url=jwks,
        dev_mode=True,
        log_format="console",
        outbox_poll_interval=0.05,
    )


@pytest.fixture
async def catalog(
    service_database: Callable[[str], Awaitable[str]],
    amqp_url: str,
    broker_namespace: infra.BrokerNamespace,
    jwks_url: tuple[str, Issuer],
) -> AsyncIterator[Catalog]:
    url = await service_database("catalog")
    jwks, issuer = jwks_url
    settings = catalog_settings(url, amqp_url, broker_namespace.prefix, jwks)
    app = build_app(settings)
    engine = create_engine(url)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://catalog") as http:
            yield Catalog(http, settings, engine, issuer)
    await engine.dispose()


@dataclass
class RunningWorker:
    worker: Worker
    publisher: Broker
    stop: asyncio.Event
    task: asyncio.Task[None]

    async def publish(self, event: Event) -> None:
        """Put a clients event on the events exchange, as the clients relay does."""
        exchange = await self.publisher.events_exchange()
        await exchange.publish(
            aio_pika.Message(
                body=event.model_dump_json().encode(),
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=str(event.id),
                type=event.name,
            ),
            routing_key=event.name,
        )


@pytest.fixture
async def running_worker(
    catalog: Catalog, amqp_url: str, broker_namespace: infra.BrokerNamespace
) -> AsyncIterator[RunningWorker]:
    """The real worker (build_worker), its queue declared before anything is published."""
    broker_namespace.services.add(SERVICE)
    worker = build_worker(catalog.settings)
    assert worker.consumer is not None
    publisher = Broker(amqp_url, Topology(broker_namespace.prefix), "catalog-test")
    connection = await publisher.publish_connection()
    channel = await connection.channel()
    await declare_service_queue(
        channel,
        publisher.topology,
        SERVICE,
        worker.consumer.event_names,
        catalog.settings.delivery_limit,
    )
    await channel.close()
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    yield RunningWorker(worker, publisher, stop, task)
    stop.set()
    await task
    await publisher.close()
