"""Appointments against real PostgreSQL and RabbitMQ and the real catalog.

``stack`` is the clients api in process whose catalog is the real catalog api served over
HTTP by uvicorn on a free port (its own migrated database). The catalog trusts the clients
service's own tokens (its JWKS is served where the catalog's settings say), and its read
model of the client book is fed with the very events the clients service wrote to its
outbox (``stack.sync()``, what the catalog's consumer does with them).

Dates are in March 2027, around the change to summer time in Paris (Sunday 28 March) and
after the one in New York (Sunday 14 March): Paris is UTC+1 until the 28th, UTC+2 from
then on; New York is UTC-4 all along.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import uvicorn
from aiohttp import web
from sqlalchemy import func, select

from catalog.handlers import HANDLERS as CATALOG_HANDLERS
from catalog.main import build_app as build_catalog_app
from clients import models
from clients.appointments import slots
from clients.config import ClientsSettings
from clients.handlers import SERVICE
from clients.identity.service import IdentityService
from clients.identity.signing import TokenSigner, load_private_key
from clients.main import build_app
from clients.purchases.service import PurchaseService
from kit.contracts.base import event_class
from kit.contracts.payments import OrderPaidV1
from kit.db import create_engine, create_sessionmaker
from kit.messaging import Broker, Outbox, Topology
from tests.catalog.conftest import Catalog, Issuer, catalog_settings, free_port
from tests.clients.conftest import ClientsApi, Coach, make_coach
from tests.clients.test_purchases import Purchases
from tests.support import infra

API = "/api/v1/clients"
CATALOG = "/api/v1/catalog"
PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
EVERY_DAY = {day: [["09:00", "12:00"]] for day in slots.DAYS}


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


# -- the stack ---------------------------------------------------------------------------


@dataclass
class Stack:
    api: ClientsApi
    catalog: Catalog
    applied: set[uuid.UUID] = field(default_factory=set)

    @property
    def http(self) -> httpx.AsyncClient:
        return self.api.http

    async def sync(self) -> None:
        """Feed the catalog's read model with the clients events not fed yet."""
        async with self.api.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(
                        models.outbox.c.id, models.outbox.c.name, models.outbox.c.payload
                    ).order_by(models.outbox.c.created_at)
                )
            ).all()
        events = []
        for event_id, name, payload in rows:
            kind = event_class(name)
            if event_id in self.applied or kind not in CATALOG_HANDLERS:
                continue
            self.applied.add(event_id)
            events.append(kind.model_validate_json(payload))  # type: ignore[union-attr]
        if events:
            await self.catalog.apply(*events)

    async def coach(self, business: str = "Casey Coaching") -> Coach:
        coach = await make_coach(self.api, business=business)
        await self.sync()
        return coach

    async def slug(self, coach: Coach) -> str:
        [created] = [
            e
            for e in await self.api.outbox_events("clients.business_created.v1")
            if e["business_id"] == coach.business_id
        ]
        return str(created["slug"])

    async def person(self, name: str = "Pat") -> Person:
        """A logged-in account (it signs up with a business of its own: a client elsewhere)."""
        email = f"{name.lower()}-{uuid.uuid4().hex[:8]}@example.com"
        result = await self.api.signup(email, name=f"{name} Person", business_name=f"{name} Co")
        return Person(
            account_id=str(result["account"]["id"]),
            email=email,
            headers={"Authorization": f"Bearer {result['access_token']}"},
        )

    async def offering(self, coach: Coach, **fields: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": "Coaching session",
            "description": "One hour.",
            "kind": "appointment",
            "details": {"duration_minutes": 60},
            "billing": {"type": "free"},
            "price_minor": 0,
            "currency": "eur",
            "visibility": "public",
            **fields,
        }
        base = f"{CATALOG}/businesses/{coach.business_id}/offerings"
        created = await self.catalog.http.post(base, json=body, headers=coach.headers)
        assert created.status_code == 201, created.text
        published = await self.catalog.http.post(
            f"{base}/{created.json()['id']}/publish", headers=coach.headers
        )
        assert published.status_code == 200, published.text
        return dict(published.json())

    async def schedule(self, coach: Coach, **fields: Any) -> dict[str, Any]:
        body = {
            "time_zone": "Europe/Paris",
            "weekly_hours": EVERY_DAY,
            "client_notice_hours": 24,
            "reminder_hours_before": 24,
            "coupon_sites": ["Groupon", "LivingSocial"],
            **fields,
        }
        response = await self.http.put(coach.url("/schedule"), json=body, headers=coach.headers)
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def request(
        self,
        slug: str,
        offering_id: str,
        starts_at: datetime,
        *,
        headers: dict[str, str] | None = None,
        key: str | None = None,
        **body: Any,
    ) -> httpx.Response:
        payload = {
            "offering_id": offering_id,
            "starts_at": iso(starts_at),
            "time_zone": "America/New_York",
            "pay_with": "free",
            **body,
        }
        if headers is None:
            payload.setdefault("name", "Robin Visitor")
            payload.setdefault("email", f"robin-{uuid.uuid4().hex[:8]}@example.com")
        return await self.http.post(
            f"{API}/b/{slug}/appointments",
            json=payload,
            headers={"Idempotency-Key": key or f"key-{uuid.uuid4().hex}", **(headers or {})},
        )

    async def requested(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        response = await self.request(*args, **kwargs)
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def act(
        self, coach: Coach, appointment_id: str, action: str, **body: Any
    ) -> httpx.Response:
        return await self.http.post(
            coach.url(f"/appointments/{appointment_id}/{action}"),
            json=body or None,
            headers=coach.headers,
        )

    async def slots(self, slug: str, offering_id: str, **params: Any) -> httpx.Response:
        return await self.http.get(
            f"{API}/b/{slug}/appointment-offerings/{offering_id}/slots", params=params
        )

    async def apply_orders(self, *events: OrderPaidV1) -> None:
        """What the clients consumer does with payments.order_paid.v1."""
        sessionmaker = create_sessionmaker(self.api.engine)
        signer = self.api.app.state.signer
        async with sessionmaker() as session, session.begin():
            identity = IdentityService(session, self.api.settings, signer, Outbox(models.outbox))
            await PurchaseService(session, identity).orders_paid(list(events))

    async def credits_of(self, person: Person) -> list[dict[str, Any]]:
        response = await self.http.get(f"{API}/me/purchases", headers=person.headers)
        assert response.status_code == 200, response.text
        return [c for b in response.json()["items"] for c in b["credits"]]

    async def events(self, name: str, appointment_id: str) -> list[dict[str, Any]]:
        return [
            e
            for e in await self.api.outbox_events(name)
            if e.get("appointment_id") == appointment_id
        ]

    async def count(self, table: Any, *where: Any) -> int:
        async with self.api.engine.connect() as conn:
            query = select(func.count()).select_from(table)
            if where:
                query = query.where(*where)
            return int((await conn.execute(query)).scalar_one())


@dataclass
class Person:
    account_id: str
    email: str
    headers: dict[str, str]


def engagement_paid(coach: Coach, person: Person, **overrides: Any) -> OrderPaidV1:
    values: dict[str, Any] = {
        "business_id": uuid.UUID(coach.business_id),
        "order_id": uuid.uuid4(),
        "offering_id": uuid.uuid4(),
        "offering_version_id": uuid.uuid4(),
        "offering_name": "Five sessions",
        "kind": "engagement",
        "details": {"credits": 5},
        "billing": {"type": "one_time"},
        "buyer_account_id": uuid.UUID(person.account_id),
        "buyer_email": person.email,
        "buyer_name": "Pat Person",
        "amount_minor": 40000,
        "currency": "EUR",
        "discount_code": None,
        "discount_minor": 0,
        "paid_at": datetime.now(UTC),
        "business_name": "Casey Coaching",
        **overrides,
    }
    return OrderPaidV1(**values)


@pytest.fixture
async def stack(
    service_database: Callable[[str], Awaitable[str]],
    amqp_url: str,
    broker_namespace: infra.BrokerNamespace,
) -> AsyncIterator[Stack]:
    clients_url = await service_database("clients")
    catalog_url = await service_database("catalog")
    base = ClientsSettings(
        database_url=clients_url,
        amqp_url=amqp_url,
        broker_namespace=broker_namespace.prefix,
        dev_mode=True,
        log_format="console",
    )
    # The catalog checks the clients service's tokens against its JWKS, served over HTTP.
    jwks = TokenSigner(
        load_private_key(base.jwt_private_key, base.secret_key),
        issuer=base.jwt_issuer,
        audience=base.jwt_audience,
        ttl_seconds=base.access_token_ttl_seconds,
    ).jwks()

    async def serve(_request: web.Request) -> web.Response:
        return web.json_response(jwks)

    jwks_app = web.Application()
    jwks_app.router.add_get("/jwks.json", serve)
    runner = web.AppRunner(jwks_app)
    await runner.setup()
    jwks_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", jwks_port).start()

    settings = catalog_settings(
        catalog_url,
        amqp_url,
        broker_namespace.prefix,
        f"http://127.0.0.1:{jwks_port}/jwks.json",
    )
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
    catalog_engine = create_engine(catalog_url)
    clients_settings = base.model_copy(update={"catalog_url": f"http://127.0.0.1:{port}"})
    app = build_app(clients_settings)
    clients_engine = create_engine(clients_url)
    try:
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as catalog_http,
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://clients", timeout=30
            ) as http,
        ):
            catalog = Catalog(catalog_http, settings, catalog_engine, Issuer())
            yield Stack(ClientsApi(app, http, clients_settings, clients_engine), catalog)
    finally:
        server.should_exit = True
        await task
        await runner.cleanup()
        await catalog_engine.dispose()
        await clients_engine.dispose()


@dataclass
class Shop:
    coach: Coach
    slug: str
    offering: dict[str, Any]


@pytest.fixture
async def shop(stack: Stack) -> Shop:
    coach = await stack.coach()
    await stack.schedule(coach)
    offering = await stack.offering(coach)
    return Shop(coach, await stack.slug(coach), offering)


# Friday 26 March 2027, 09:00 in Paris (UTC+1): 08:00 UTC.
FRIDAY_9 = utc(2027, 3, 26, 8, 0)
# Monday 29 March 2027, 09:00 in Paris (UTC+2, summer time): 07:00 UTC.
MONDAY_9 = utc(2027, 3, 29, 7, 0)


# -- the slot computation alone ---------------------------------------------------------


def test_slots_follow_the_business_zone_across_the_change_to_summer_time() -> None:
    free = slots.free_slots(
        hours={"fri": [["09:00", "11:00"]], "sun": [["09:00", "11:00"]]},
        tz=PARIS,
        start=utc(2027, 3, 26),
        end=utc(2027, 3, 29),
        duration_minutes=60,
        buffer_minutes=0,
        busy=[],
        blocked=[],
        now=utc(2026, 12, 1),
    )
    # Friday in winter time (UTC+1), Sunday (the 28th, the day of the change) in summer time.
    assert [s for s, _ in free] == [
        utc(2027, 3, 26, 8),
        utc(2027, 3, 26, 9),
        utc(2027, 3, 28, 7),
        utc(2027, 3, 28, 8),
    ]
    assert slots.local_label(utc(2027, 3, 28, 7), NEW_YORK) == "Sun 28 Mar 2027, 03:00"


def test_slots_leave_out_the_past_blocked_time_and_confirmed_appointments_with_buffers() -> None:
    day = {"mon": [["09:00", "13:00"]]}
    kwargs: dict[str, Any] = {
        "hours": day,
        "tz": PARIS,
        "start": utc(2027, 3, 29),
        "end": utc(2027, 3, 30),
        "duration_minutes": 45,
        "buffer_minutes": 15,
    }
    everything = slots.free_slots(**kwargs, busy=[], blocked=[], now=utc(2026, 12, 1))
    # A step of duration + buffer (60 minutes) from the opening; the last ends by 13:00.
    assert [s for s, _ in everything] == [utc(2027, 3, 29, h) for h in (7, 8, 9, 10)]
    later = slots.free_slots(**kwargs, busy=[], blocked=[], now=utc(2027, 3, 29, 8, 30))
    assert [s for s, _ in later] == [utc(2027, 3, 29, 9), utc(2027, 3, 29, 10)]
    # A confirmed 30-minute appointment at 08:50 UTC with a 20-minute buffer occupies
    # 08:50-09:40: the 08:00 slot (45 + 15 minutes: until 09:00) and the 09:00 one go.
    busy = [slots.Busy(utc(2027, 3, 29, 8, 50), utc(2027, 3, 29, 9, 20), 20)]
    blocked = [(utc(2027, 3, 29, 10, 30), utc(2027, 3, 29, 11))]
    free = slots.free_slots(**kwargs, busy=busy, blocked=blocked, now=utc(2026, 12, 1))
    assert [s for s, _ in free] == [utc(2027, 3, 29, 7)]


def test_weekly_hours_problems_name_the_field() -> None:
    problems = slots.weekly_hours_problems(
        {
            "mon": [["09:00", "12:00"], ["11:00", "13:00"]],
            "tue": [["25:00", "26:00"]],
            "wed": [["12:00", "09:00"]],
            "funday": [],
            "thu": "all day",
            "fri": [["09:00", "24:00"]],
        }
    )
    assert {f for f, _ in problems} == {
        "weekly_hours.mon.1",
        "weekly_hours.tue.0",
        "weekly_hours.wed.0",
        "weekly_hours.funday",
        "weekly_hours.thu",
    }


# -- availability ------------------------------------------------------------------------


async def test_slots_in_the_visitors_zone_across_a_daylight_saving_change(
    stack: Stack, shop: Shop
) -> None:
    response = await stack.slots(
        shop.slug,
        shop.offering["id"],
        **{"from": "2027-03-26", "days": 4, "tz": "America/New_York"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["time_zone"], body["business_time_zone"]) == (
        "America/New_York",
        "Europe/Paris",
    )
    starts = [datetime.fromisoformat(s["starts_at"]) for s in body["slots"]]
    # Paris 09:00, 10:00, 11:00 every day: 08-10 UTC in winter time, 07-09 UTC in summer.
    expected = [
        utc(2027, 3, day, hour)
        for day, hours in ((26, (8, 9, 10)), (27, (8, 9, 10)), (28, (7, 8, 9)), (29, (7, 8, 9)))
        for hour in hours
    ]
    assert starts == expected
    labels = [s["local_label"] for s in body["slots"]]
    assert labels[0] == "Fri 26 Mar 2027, 04:00"  # 09:00 in Paris, 04:00 in New York
    assert labels[-3] == "Mon 29 Mar 2027, 03:00"  # 09:00 in Paris, now 03:00 in New York

    # A blocked morning is never offered; nor is a confirmed appointment's time.
    blocked = await stack.http.post(
        shop.coach.url("/blocked-times"),
        json={"starts_at": "2027-03-27T00:00:00+01:00", "ends_at": "2027-03-28T00:00:00+01:00"},
        headers=shop.coach.headers,
    )
    assert blocked.status_code == 201, blocked.text
    made = await stack.requested(shop.slug, shop.offering["id"], MONDAY_9)
    assert (await stack.act(shop.coach, made["id"], "confirm")).status_code == 200
    after = await stack.slots(
        shop.slug,
        shop.offering["id"],
        **{"from": "2027-03-26", "days": 4, "tz": "America/New_York"},
    )
    left = [datetime.fromisoformat(s["starts_at"]) for s in after.json()["slots"]]
    assert left == [s for s in expected if s.day != 27 and s != MONDAY_9]

    # The stored times are UTC instants; the appointment knows both zones.
    assert datetime.fromisoformat(made["starts_at"]) == MONDAY_9
    assert datetime.fromisoformat(made["ends_at"]) == MONDAY_9 + timedelta(hours=1)
    assert (made["business_time_zone"], made["client_time_zone"]) == (
        "Europe/Paris",
        "America/New_York",
    )
    # A time that is not a free slot (confirmed, or off the grid) cannot be requested.
    for taken in (MONDAY_9, MONDAY_9 + timedelta(minutes=30), utc(2027, 3, 29, 15)):
        refused = await stack.request(shop.slug, shop.offering["id"], taken)
        assert refused.status_code == 409, refused.text
        assert refused.json()["errors"][0]["field"] == "starts_at"


# -- requests ----------------------------------------------------------------------------


async def test_free_request_makes_the_requester_a_client_once(stack: Stack, shop: Shop) -> None:
    email = "Dana.Visitor@Example.com"
    first = await stack.requested(
        shop.slug,
        shop.offering["id"],
        FRIDAY_9,
        name="Dana Visitor",
        email=email,
        coupon_site="Groupon",
        coupon_number="GR-12345",
    )
    second = await stack.requested(
        shop.slug, shop.offering["id"], FRIDAY_9 + timedelta(hours=1), name="Dana V", email=email
    )
    assert first["status"] == second["status"] == "requested"
    assert (first["coupon_site"], first["coupon_number"]) == ("Groupon", "GR-12345")
    assert first["client_id"] == second["client_id"] is not None
    listed = await stack.http.get(
        shop.coach.url("/clients?q=dana.visitor"), headers=shop.coach.headers
    )
    [client] = listed.json()["items"]
    assert (client["email"], client["source"]) == ("dana.visitor@example.com", "appointment")
    assert await stack.count(models.Account.__table__, models.Account.email == client["email"]) == 1
    added = [
        e
        for e in await stack.api.outbox_events("clients.client_added.v1")
        if e["email"] == client["email"]
    ]
    assert len(added) == 1
    # The coach's calendar shows both requests, soonest first.
    calendar = await stack.http.get(
        shop.coach.url("/appointments"),
        params={"from": "2027-03-26T00:00:00Z", "to": "2027-03-27T00:00:00Z"},
        headers=shop.coach.headers,
    )
    assert [a["id"] for a in calendar.json()["items"]] == [first["id"], second["id"]]


async def test_idempotency_key_answers_the_same_request(stack: Stack, shop: Shop) -> None:
    person = await stack.person()
    first = await stack.requested(
        shop.slug, shop.offering["id"], FRIDAY_9, headers=person.headers, key="same-key-123"
    )
    again = await stack.requested(
        shop.slug, shop.offering["id"], FRIDAY_9, headers=person.headers, key="same-key-123"
    )
    assert again["id"] == first["id"]
    assert await stack.count(models.Appointment.__table__) == 1
    assert len(await stack.events("clients.appointment_requested.v1", first["id"])) == 1
    other = await stack.request(
        shop.slug,
        shop.offering["id"],
        FRIDAY_9 + timedelta(hours=1),
        headers=person.headers,
        key="same-key-123",
    )
    assert other.status_code == 409


async def test_booking_with_a_credit_uses_the_one_expiring_first_and_returns_it_once(
    stack: Stack,
) -> None:
    coach = await stack.coach()
    await stack.schedule(coach)
    paid = await stack.offering(coach, billing={"type": "one_time"}, price_minor=9000)
    other = await stack.offering(coach, name="Other session")
    slug = await stack.slug(coach)
    person = await stack.person()
    now = datetime.now(UTC)
    late = engagement_paid(coach, person, details={"credits": 5, "credit_expiry_days": 200})
    soon = engagement_paid(coach, person, details={"credits": 3, "credit_expiry_days": 150})
    # Expires first of all, but only for another appointment offering.
    elsewhere = engagement_paid(
        coach,
        person,
        details={
            "credits": 2,
            "credit_expiry_days": 140,
            "appointment_offering_ids": [other["id"]],
        },
    )
    expired = engagement_paid(
        coach,
        person,
        details={"credits": 4, "credit_expiry_days": 1},
        paid_at=now - timedelta(days=5),
    )
    await stack.apply_orders(late, soon, elsewhere, expired)

    booked = await stack.requested(
        slug, paid["id"], FRIDAY_9, headers=person.headers, pay_with="credit"
    )
    assert (booked["status"], booked["paid_with"]) == ("requested", "credit")
    labels = {c["order_id"]: c["label"] for c in await stack.credits_of(person)}
    assert labels == {
        str(late.order_id): "5 of 5 left",
        str(soon.order_id): "2 of 3 left",
        str(elsewhere.order_id): "2 of 2 left",
        str(expired.order_id): "4 of 4 left",
    }
    # The client cancels (well before the notice period): the credit comes back, once.
    canceled = await stack.http.post(
        f"{API}/me/appointments/{booked['id']}/cancel", headers=person.headers
    )
    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["status"] == "canceled"
    again = await stack.http.post(
        f"{API}/me/appointments/{booked['id']}/cancel", headers=person.headers
    )
    assert again.status_code == 409
    labels = {c["order_id"]: c["label"] for c in await stack.credits_of(person)}
    assert labels[str(soon.order_id)] == "3 of 3 left"
    [event] = await stack.events("clients.appointment_canceled.v1", booked["id"])
    assert (event["canceled_by"], event["sequence"]) == ("client", 1)

    # A declined credit-paid request gives its credit back too.
    second = await stack.requested(
        slug, paid["id"], FRIDAY_9, headers=person.headers, pay_with="credit"
    )
    assert {c["order_id"]: c["remaining"] for c in await stack.credits_of(person)}[
        str(soon.order_id)
    ] == 2
    assert (await stack.act(coach, second["id"], "decline")).status_code == 200
    assert {c["order_id"]: c["remaining"] for c in await stack.credits_of(person)}[
        str(soon.order_id)
    ] == 3

    # Without a credit for it (the other offering's credits do not apply), none is taken.
    stranger = await stack.person("Sam")
    refused = await stack.request(
        slug, paid["id"], FRIDAY_9, headers=stranger.headers, pay_with="credit"
    )
    assert refused.status_code == 422
    assert (refused.json()["reason"], refused.json()["errors"][0]["field"]) == (
        "no_credit",
        "pay_with",
    )
    anonymous = await stack.request(slug, paid["id"], FRIDAY_9, pay_with="credit")
    assert anonymous.status_code == 401


async def test_paid_request_waits_for_its_order_then_becomes_a_request(
    stack: Stack, broker_namespace: infra.BrokerNamespace
) -> None:
    coach = await stack.coach()
    await stack.schedule(coach)
    paid = await stack.offering(coach, billing={"type": "one_time"}, price_minor=9000)
    slug = await stack.slug(coach)
    held = await stack.requested(
        slug,
        paid["id"],
        FRIDAY_9,
        pay_with="order",
        name="Olive Buyer",
        email="olive@example.com",
        coupon_site="LivingSocial",
        coupon_number="LS-9",
    )
    assert held["status"] == "awaiting_payment"
    assert held["client_id"] is None and held["hold_expires_at"] is not None
    # Not a request for the coach yet: not listed, not reachable, no event, no client.
    calendar = await stack.http.get(
        coach.url("/appointments"),
        params={"from": "2027-03-01T00:00:00Z", "to": "2027-04-01T00:00:00Z"},
        headers=coach.headers,
    )
    assert calendar.json()["items"] == []
    assert (await stack.act(coach, held["id"], "confirm")).status_code == 404
    assert await stack.events("clients.appointment_requested.v1", held["id"]) == []
    # Free and paid do not mix.
    assert (await stack.request(slug, paid["id"], FRIDAY_9, pay_with="free")).status_code == 422

    # payments.order_paid.v1 naming the appointment, through the broker and the worker.
    broker_namespace.services.add(SERVICE)
    publisher = Broker(stack.api.settings.amqp_url, Topology(broker_namespace.prefix), "test")
    harness = Purchases(stack.api, publisher)
    await harness.start()
    try:
        order = OrderPaidV1(
            business_id=uuid.UUID(coach.business_id),
            order_id=uuid.uuid4(),
            offering_id=uuid.UUID(paid["id"]),
            offering_version_id=uuid.UUID(paid["version_id"]),
            offering_name=paid["name"],
            kind="appointment",
            details=paid["details"],
            billing=paid["billing"],
            buyer_account_id=None,
            buyer_email="olive@example.com",
            buyer_name="Olive Buyer",
            amount_minor=9000,
            currency="EUR",
            discount_code=None,
            discount_minor=0,
            paid_at=datetime.now(UTC),
            business_name="Casey Coaching",
            appointment_id=uuid.UUID(held["id"]),
        )
        await harness.deliver(order)
        # A second order naming it (a double purchase) changes nothing.
        await harness.deliver(
            order.model_copy(update={"id": uuid.uuid4(), "order_id": uuid.uuid4()})
        )
        [published] = await harness.wait_published("clients.appointment_requested.v1", 1)
    finally:
        await harness.stop()
        await publisher.close()
    assert published["appointment_id"] == held["id"]
    assert (published["coupon_site"], published["coupon_number"]) == ("LivingSocial", "LS-9")
    assert (published["client_email"], published["sequence"]) == ("olive@example.com", 0)
    one = await stack.http.get(coach.url(f"/appointments/{held['id']}"), headers=coach.headers)
    assert one.status_code == 200, one.text
    assert (one.json()["status"], one.json()["paid_with"]) == ("requested", "order")
    assert one.json()["client_id"] is not None
    assert (await stack.act(coach, held["id"], "confirm")).status_code == 200


async def test_two_confirms_for_one_slot_at_the_same_moment_confirm_exactly_one(
    stack: Stack, shop: Shop
) -> None:
    made = [await stack.requested(shop.slug, shop.offering["id"], FRIDAY_9) for _ in range(2)]
    answers = await asyncio.gather(*(stack.act(shop.coach, a["id"], "confirm") for a in made))
    assert sorted(r.status_code for r in answers) == [200, 409], [r.text for r in answers]
    [loser] = [r for r in answers if r.status_code == 409]
    assert loser.json()["reason"] == "overlap"
    assert (
        await stack.count(
            models.Appointment.__table__,
            models.Appointment.status == "confirmed",
        )
        == 1
    )
    # Again, many times over, with requests from different people for overlapping slots.
    buffered = await stack.offering(
        shop.coach, name="Long session", details={"duration_minutes": 90, "buffer_minutes": 30}
    )
    sunday = utc(2027, 3, 28, 7)  # 09:00 in Paris, summer time
    long_one = await stack.requested(shop.slug, buffered["id"], sunday)
    short_ones = [
        await stack.requested(shop.slug, shop.offering["id"], sunday + timedelta(hours=h))
        for h in (1, 2)
    ]
    answers = await asyncio.gather(
        *(stack.act(shop.coach, a["id"], "confirm") for a in (long_one, *short_ones))
    )
    # 09:00-10:30 plus 30 minutes of buffer (until 11:00, Paris) overlaps the 10:00 session,
    # not the 11:00 one: whichever of the first two gets the lock first wins.
    codes = [r.status_code for r in answers]
    assert codes[2] == 200 and sorted(codes[:2]) == [200, 409], codes


async def test_coach_actions_events_and_sequence(stack: Stack, shop: Shop) -> None:
    person = await stack.person()
    made = await stack.requested(
        shop.slug,
        shop.offering["id"],
        FRIDAY_9,
        headers=person.headers,
        coupon_site="Groupon",
        coupon_number="G-1",
    )
    aid = made["id"]
    assert (await stack.act(shop.coach, aid, "confirm")).status_code == 200
    moved = await stack.act(shop.coach, aid, "reschedule", starts_at=iso(MONDAY_9))
    assert moved.status_code == 200, moved.text
    assert moved.json()["status"] == "confirmed"
    canceled = await stack.act(shop.coach, aid, "cancel")
    assert canceled.status_code == 200
    assert (await stack.act(shop.coach, aid, "confirm")).status_code == 409

    names = [
        "clients.appointment_requested.v1",
        "clients.appointment_confirmed.v1",
        "clients.appointment_rescheduled.v1",
        "clients.appointment_canceled.v1",
    ]
    found = [e for e in await stack.api.outbox_events() if e.get("appointment_id") == aid]
    assert [e["name"] for e in found] == names
    assert [e["sequence"] for e in found] == [0, 1, 2, 3]
    assert [e["status"] for e in found] == ["requested", "confirmed", "confirmed", "canceled"]
    for event in found:
        assert event["business_id"] == shop.coach.business_id
        assert event["offering_id"] == shop.offering["id"]
        assert event["offering_name"] == "Coaching session"
        assert event["business_name"] == "Casey Coaching"
        assert event["business_time_zone"] == "Europe/Paris"
        assert event["client_time_zone"] == "America/New_York"
        assert event["client_account_id"] == person.account_id
        assert event["client_email"] == person.email
        assert (event["coupon_site"], event["coupon_number"]) == ("Groupon", "G-1")
        assert event["reminder_hours_before"] == 24
    assert datetime.fromisoformat(found[1]["starts_at"]) == FRIDAY_9
    assert datetime.fromisoformat(found[2]["starts_at"]) == MONDAY_9
    assert datetime.fromisoformat(found[2]["previous_starts_at"]) == FRIDAY_9
    assert found[2]["rescheduled_by"] == "coach"
    assert found[3]["canceled_by"] == "coach"

    # The client's own list; the timeline of the client.
    mine = await stack.http.get(f"{API}/me/appointments", headers=person.headers)
    [own] = mine.json()["items"]
    assert (own["id"], own["status"], own["business_name"]) == (aid, "canceled", "Casey Coaching")


async def test_client_changes_only_within_the_notice_period(stack: Stack, shop: Shop) -> None:
    person = await stack.person()
    made = await stack.requested(shop.slug, shop.offering["id"], FRIDAY_9, headers=person.headers)
    assert (await stack.act(shop.coach, made["id"], "confirm")).status_code == 200
    # A year's notice: March 2027 is inside it.
    await stack.schedule(shop.coach, client_notice_hours=24 * 365)
    url = f"{API}/me/appointments/{made['id']}"
    for action, body in (("cancel", None), ("reschedule", {"starts_at": iso(MONDAY_9)})):
        refused = await stack.http.post(f"{url}/{action}", json=body, headers=person.headers)
        assert refused.status_code == 409, refused.text
        assert refused.json()["reason"] == "notice_period"
    await stack.schedule(shop.coach, client_notice_hours=48)
    moved = await stack.http.post(
        f"{url}/reschedule", json={"starts_at": iso(MONDAY_9)}, headers=person.headers
    )
    assert moved.status_code == 200, moved.text
    assert (moved.json()["status"], moved.json()["starts_at"][:16]) == (
        "confirmed",
        "2027-03-29T07:00",
    )
    # Only into a free slot.
    other = await stack.requested(shop.slug, shop.offering["id"], FRIDAY_9)
    assert (await stack.act(shop.coach, other["id"], "confirm")).status_code == 200
    taken = await stack.http.post(
        f"{url}/reschedule", json={"starts_at": iso(FRIDAY_9)}, headers=person.headers
    )
    assert taken.status_code == 409
    assert (await stack.http.post(f"{url}/cancel", headers=person.headers)).status_code == 200


async def test_group_only_offering_and_removal_from_the_group(stack: Stack) -> None:
    coach = await stack.coach()
    await stack.schedule(coach)
    slug = await stack.slug(coach)
    member, outsider = await stack.person("Mia"), await stack.person("Ola")
    # Mia becomes a client (a free request of a public offering), then a group member.
    public = await stack.offering(coach)
    await stack.requested(slug, public["id"], FRIDAY_9, headers=member.headers)
    # Ola is a client too, in no group.
    await stack.requested(slug, public["id"], FRIDAY_9, headers=outsider.headers)
    listed = await stack.http.get(coach.url(f"/clients?q={member.email}"), headers=coach.headers)
    [client] = listed.json()["items"]
    group = await stack.http.post(
        coach.url("/groups"), json={"name": "Inner circle"}, headers=coach.headers
    )
    group_id = group.json()["id"]
    members_url = coach.url(f"/groups/{group_id}/members")
    added = await stack.http.post(
        members_url, json={"client_ids": [client["id"]]}, headers=coach.headers
    )
    assert added.status_code in (200, 201), added.text
    await stack.sync()
    only = await stack.offering(
        coach, name="Inner circle session", visibility="groups", group_ids=[group_id]
    )

    refused = await stack.request(slug, only["id"], MONDAY_9, headers=outsider.headers)
    assert refused.status_code == 403, refused.text
    assert refused.json()["reason"] == "not_in_group"
    anonymous = await stack.request(slug, only["id"], MONDAY_9)
    assert anonymous.status_code in (401, 403, 404)
    hidden = await stack.slots(slug, only["id"], **{"from": "2027-03-29"})
    assert hidden.status_code == 403  # the catalog's answer for an anonymous visitor

    booked = await stack.requested(slug, only["id"], MONDAY_9, headers=member.headers)
    assert (await stack.act(coach, booked["id"], "confirm")).status_code == 200
    removed = await stack.http.post(
        f"{members_url}/remove", json={"client_ids": [client["id"]]}, headers=coach.headers
    )
    assert removed.status_code in (200, 204), removed.text
    await stack.sync()
    mine = await stack.http.get(f"{API}/me/appointments", headers=member.headers)
    [kept] = [a for a in mine.json()["items"] if a["id"] == booked["id"]]
    assert kept["status"] == "confirmed"
    assert await stack.events("clients.appointment_canceled.v1", booked["id"]) == []
    # A new request is refused now.
    again = await stack.request(
        slug, only["id"], MONDAY_9 + timedelta(hours=1), headers=member.headers
    )
    assert again.status_code == 403


async def test_not_self_bookable_by_new_clients(stack: Stack) -> None:
    coach = await stack.coach()
    await stack.schedule(coach)
    slug = await stack.slug(coach)
    closed = await stack.offering(
        coach,
        details={"duration_minutes": 60, "new_clients_can_self_book": False},
        billing={"type": "one_time"},
        price_minor=9000,
    )
    newcomer, regular = await stack.person("New"), await stack.person("Reg")
    for who in (None, newcomer.headers):
        refused = await stack.request(slug, closed["id"], FRIDAY_9, headers=who, pay_with="order")
        assert refused.status_code in (401, 403), refused.text
        if who is not None:
            assert refused.json()["reason"] == "not_self_bookable"
    await stack.apply_orders(engagement_paid(coach, regular, details={"credits": 2}))
    booked = await stack.requested(
        slug, closed["id"], FRIDAY_9, headers=regular.headers, pay_with="credit"
    )
    assert booked["status"] == "requested"


async def test_every_id_is_isolated_between_businesses(stack: Stack, shop: Shop) -> None:
    person = await stack.person()
    made = await stack.requested(shop.slug, shop.offering["id"], FRIDAY_9, headers=person.headers)
    blocked = await stack.http.post(
        shop.coach.url("/blocked-times"),
        json={"starts_at": "2027-04-01T00:00:00Z", "ends_at": "2027-04-02T00:00:00Z"},
        headers=shop.coach.headers,
    )
    other = await stack.coach("Other Coaching")
    other_slug = await stack.slug(other)
    aid = made["id"]
    # Another coach: with their business in the path, or ours.
    for action in ("confirm", "decline", "cancel"):
        assert (await stack.act(other, aid, action)).status_code == 404
    assert (await stack.act(other, aid, "reschedule", starts_at=iso(MONDAY_9))).status_code == 404
    assert (
        await stack.http.get(other.url(f"/appointments/{aid}"), headers=other.headers)
    ).status_code == 404
    assert (
        await stack.http.delete(
            other.url(f"/blocked-times/{blocked.json()['id']}"), headers=other.headers
        )
    ).status_code == 404
    for path in ("/schedule", "/blocked-times", "/appointments", f"/appointments/{aid}"):
        response = await stack.http.get(shop.coach.url(path), headers=other.headers)
        assert response.status_code == 404, path
    assert (await stack.act(shop.coach, aid, "confirm", **{})).status_code == 200
    other_calendar = await stack.http.get(
        other.url("/appointments"),
        params={"from": "2027-03-01T00:00:00Z", "to": "2027-05-01T00:00:00Z"},
        headers=other.headers,
    )
    assert other_calendar.json()["items"] == []
    # Another person cannot act on it.
    stranger = await stack.person("Sam")
    for action in ("cancel", "reschedule"):
        response = await stack.http.post(
            f"{API}/me/appointments/{aid}/{action}",
            json={"starts_at": iso(MONDAY_9)} if action == "reschedule" else None,
            headers=stranger.headers,
        )
        assert response.status_code == 404
    # An offering of one business is not bookable through another's page.
    assert (await stack.slots(other_slug, shop.offering["id"])).status_code == 404
    wrong = await stack.request(other_slug, shop.offering["id"], FRIDAY_9)
    assert wrong.status_code == 404
    assert (await stack.slots("no-such-business", shop.offering["id"])).status_code == 404
    # The confirmed appointment is still the business's, unchanged by all that.
    one = await stack.http.get(shop.coach.url(f"/appointments/{aid}"), headers=shop.coach.headers)
    assert one.json()["status"] == "confirmed"


async def test_bad_input_names_the_field_and_changes_nothing(stack: Stack, shop: Shop) -> None:
    before = (await stack.http.get(shop.coach.url("/schedule"), headers=shop.coach.headers)).json()
    good = {
        "time_zone": "Europe/Paris",
        "weekly_hours": EVERY_DAY,
        "client_notice_hours": 24,
        "reminder_hours_before": 24,
        "coupon_sites": [],
    }
    cases = [
        ({"time_zone": "Mars/Olympus"}, "time_zone"),
        ({"time_zone": "../../etc/passwd"}, "time_zone"),
        ({"weekly_hours": {"mon": [["09:00", "25:00"]]}}, "weekly_hours.mon.0"),
        ({"weekly_hours": {"mon": [["12:00", "09:00"]]}}, "weekly_hours.mon.0"),
        ({"weekly_hours": {"someday": []}}, "weekly_hours.someday"),
        ({"client_notice_hours": -1}, "client_notice_hours"),
        ({"reminder_hours_before": "soon"}, "reminder_hours_before"),
        ({"coupon_sites": ["line\nbreak"]}, "coupon_sites.0"),
        ({"surprise": True}, "surprise"),
    ]
    for change, name in cases:
        response = await stack.http.put(
            shop.coach.url("/schedule"), json={**good, **change}, headers=shop.coach.headers
        )
        assert response.status_code == 422, (change, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert name in [e["field"] for e in response.json()["errors"]], (change, response.text)
    after = (await stack.http.get(shop.coach.url("/schedule"), headers=shop.coach.headers)).json()
    assert after == before

    blocked = await stack.http.post(
        shop.coach.url("/blocked-times"),
        json={"starts_at": "2027-04-02T00:00:00Z", "ends_at": "2027-04-01T00:00:00Z"},
        headers=shop.coach.headers,
    )
    assert (blocked.status_code, blocked.json()["errors"][0]["field"]) == (422, "ends_at")
    naive = await stack.http.post(
        shop.coach.url("/blocked-times"),
        json={"starts_at": "2027-04-01T00:00:00", "ends_at": "2027-04-02T00:00:00Z"},
        headers=shop.coach.headers,
    )
    assert (naive.status_code, naive.json()["errors"][0]["field"]) == (422, "starts_at")

    offering = shop.offering["id"]
    request_cases: list[tuple[dict[str, Any], str]] = [
        ({"starts_at": "2027-03-26T09:00:00"}, "starts_at"),
        ({"starts_at": "tomorrow"}, "starts_at"),
        ({"time_zone": "Nowhere/City"}, "time_zone"),
        ({"pay_with": "cash"}, "pay_with"),
        ({"coupon_site": "Not a site"}, "coupon_site"),
        ({"coupon_number": "x" * 101}, "coupon_number"),
        ({"email": "not an email"}, "email"),
        ({"email": None}, "email"),
        ({"offering_id": "nope"}, "offering_id"),
        ({"price_minor": 0}, "price_minor"),
    ]
    for change, name in request_cases:
        body = {
            "offering_id": offering,
            "starts_at": iso(FRIDAY_9),
            "time_zone": "America/New_York",
            "pay_with": "free",
            "name": "Robin",
            "email": "robin@example.com",
            **change,
        }
        body = {k: v for k, v in body.items() if v is not None}
        response = await stack.http.post(
            f"{API}/b/{shop.slug}/appointments",
            json=body,
            headers={"Idempotency-Key": f"key-{uuid.uuid4().hex}"},
        )
        assert response.status_code == 422, (change, response.text)
        assert name in [e["field"] for e in response.json()["errors"]], (change, response.text)
    no_key = await stack.http.post(
        f"{API}/b/{shop.slug}/appointments",
        json={
            "offering_id": offering,
            "starts_at": iso(FRIDAY_9),
            "time_zone": "UTC",
            "pay_with": "free",
            "name": "Robin",
            "email": "robin@example.com",
        },
    )
    assert no_key.status_code == 422
    bad_tz = await stack.slots(shop.slug, offering, tz="Nowhere/City")
    assert (bad_tz.status_code, bad_tz.json()["errors"][0]["field"]) == (422, "tz")
    assert (await stack.slots(shop.slug, offering, days=500)).status_code == 422
    assert await stack.count(models.Appointment.__table__) == 0
    assert (
        await stack.count(
            models.Client.__table__, models.Client.business_id == uuid.UUID(shop.coach.business_id)
        )
        == 0
    )
