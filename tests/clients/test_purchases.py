"""The effects of a paid order on the clients service, from the event on the broker to the
account, the client book, credits, groups and entitlements; the buyer's view; claiming."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage
from sqlalchemy import func, select, update

from clients import models
from clients.handlers import SERVICE
from clients.identity.service import IdentityService
from clients.purchases.service import PurchaseService
from clients.worker import build_worker
from kit.contracts.base import Event
from kit.contracts.payments import OrderPaidV1
from kit.db import create_sessionmaker
from kit.messaging import Broker, Outbox, Topology, declare_service_queue
from kit.runtime import Worker
from tests.clients.conftest import ClientsApi, Coach, make_coach
from tests.support import infra

API = "/api/v1/clients"
PASSWORD = "a long unusual passphrase"
PAID_AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


async def wait_until(
    predicate: Callable[[], Awaitable[bool]], timeout: float = 15, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what}: not reached in {timeout}s")


@dataclass
class Purchases:
    """The clients api and its real worker (consumer + relay), a publisher, and a spy queue
    that receives every ``clients.*`` event the relay publishes."""

    api: ClientsApi
    publisher: Broker
    worker: Worker | None = None
    published: list[dict[str, Any]] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    _spy_connection: Any = None

    async def start(self) -> None:
        self.worker = build_worker(self.api.settings)
        assert self.worker.consumer is not None
        connection = await self.publisher.publish_connection()
        channel = await connection.channel()
        await declare_service_queue(
            channel,
            self.publisher.topology,
            SERVICE,
            self.worker.consumer.event_names,
            self.api.settings.delivery_limit,
        )
        await channel.close()
        self._spy_connection = await aio_pika.connect(self.api.settings.amqp_url)
        spy_channel = await self._spy_connection.channel()
        exchange = await spy_channel.get_exchange(self.publisher.topology.events_exchange)
        spy = await spy_channel.declare_queue(exclusive=True, auto_delete=True)
        await spy.bind(exchange, routing_key="clients.#")

        async def keep(message: AbstractIncomingMessage) -> None:
            async with message.process():
                self.published.append({"name": message.routing_key, **json.loads(message.body)})

        await spy.consume(keep)
        self._task = asyncio.create_task(self.worker.run(self._stop))

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
        if self._spy_connection is not None:
            await self._spy_connection.close()

    async def publish(self, event: Event) -> None:
        """Put the event on the events exchange, as the payments service's relay does."""
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

    async def wait_handled(self, *events: Event) -> None:
        wanted = {event.id for event in events}

        async def handled() -> bool:
            async with self.api.engine.connect() as conn:
                query = select(models.inbox.c.event_id).where(models.inbox.c.event_id.in_(wanted))
                return set((await conn.execute(query)).scalars()) == wanted

        await wait_until(handled, what=f"{len(wanted)} event(s) handled")

    async def deliver(self, *events: Event) -> None:
        for event in events:
            await self.publish(event)
        await self.wait_handled(*events)

    async def wait_published(self, name: str, count: int) -> list[dict[str, Any]]:
        async def enough() -> bool:
            return len([e for e in self.published if e["name"] == name]) >= count

        await wait_until(enough, what=f"{count} {name} published")
        await asyncio.sleep(0.5)  # and nothing more comes
        return [e for e in self.published if e["name"] == name]


@pytest.fixture
async def purchases(
    clients_api: ClientsApi, broker_namespace: infra.BrokerNamespace
) -> AsyncIterator[Purchases]:
    broker_namespace.services.add(SERVICE)
    publisher = Broker(
        clients_api.settings.amqp_url, Topology(broker_namespace.prefix), "clients-test"
    )
    harness = Purchases(clients_api, publisher)
    await harness.start()
    yield harness
    await harness.stop()
    await publisher.close()


def order_paid(coach: Coach, **overrides: Any) -> OrderPaidV1:
    values: dict[str, Any] = {
        "business_id": uuid.UUID(coach.business_id),
        "order_id": uuid.uuid4(),
        "offering_id": uuid.uuid4(),
        "offering_version_id": uuid.uuid4(),
        "offering_name": "Spring Reset Course",
        "kind": "course",
        "details": {},
        "billing": {"type": "one_time"},
        "buyer_account_id": None,
        "buyer_email": "new.buyer@example.com",
        "buyer_name": "New Buyer",
        "amount_minor": 12000,
        "currency": "USD",
        "discount_code": None,
        "discount_minor": 0,
        "paid_at": PAID_AT,
        "business_name": "Casey Coaching",
        **overrides,
    }
    return OrderPaidV1(**values)


async def count(api: ClientsApi, table: Any, *where: Any) -> int:
    async with api.engine.connect() as conn:
        query = select(func.count()).select_from(table)
        if where:
            query = query.where(*where)
        return int((await conn.execute(query)).scalar_one())


async def rows(api: ClientsApi, table: Any, *where: Any) -> list[Any]:
    async with api.engine.connect() as conn:
        return list((await conn.execute(select(table).where(*where))).all())


async def account(api: ClientsApi, email: str) -> Any:
    [row] = await rows(api, models.Account.__table__, models.Account.email == email)
    return row


async def claim_events(api: ClientsApi, email: str) -> list[dict[str, Any]]:
    return [
        e
        for e in await api.outbox_events("clients.account_registered.v1")
        if e["email"] == email and e["origin"] == "purchase"
    ]


async def profile(api: ClientsApi, coach: Coach, email: str) -> dict[str, Any]:
    found = await api.http.get(coach.url(f"/clients?q={email}"), headers=coach.headers)
    [client] = found.json()["items"]
    answer = await api.http.get(coach.url(f"/clients/{client['id']}"), headers=coach.headers)
    assert answer.status_code == 200
    result: dict[str, Any] = answer.json()
    return result


async def login(api: ClientsApi, email: str, password: str = PASSWORD) -> dict[str, str]:
    answer = await api.http.post(f"{API}/sessions", json={"email": email, "password": password})
    assert answer.status_code == 201, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


# -- a new buyer ---------------------------------------------------------------------------


async def test_a_new_buyer_gets_one_account_client_timeline_and_claim_even_when_delivered_again(
    purchases: Purchases,
) -> None:
    api = purchases.api
    coach = await make_coach(api)
    event = order_paid(coach, buyer_email="  New.Buyer@Example.COM ")
    republished = event.model_copy(update={"id": uuid.uuid4()})  # same order, another event
    await purchases.deliver(event, event, republished)

    buyer = await account(api, "new.buyer@example.com")
    assert buyer.display_name == "New Buyer"
    assert buyer.password_hash is None and buyer.email_verified_at is None
    assert await count(api, models.Account, models.Account.email == "new.buyer@example.com") == 1
    assert await count(api, models.Client, models.Client.account_id == buyer.id) == 1
    assert await count(api, models.PurchaseApplied) == 1

    client = await profile(api, coach, "new.buyer@example.com")
    assert client["source"] == "purchased" and client["status"] == "active"
    kinds = [(e["kind"], e["summary"]) for e in client["timeline"]]
    assert kinds.count(("purchased", "Bought Spring Reset Course for $120.00")) == 1
    assert ("purchased", "Became a client with a purchase") in kinds
    assert len(kinds) == 2

    [claim] = await claim_events(api, "new.buyer@example.com")
    assert claim["business_id"] == coach.business_id
    assert claim["business_name"] == "Casey Coaching"
    assert claim["account_id"] == str(buyer.id)
    assert claim["claim_token"] and claim["verification_token"] is None
    expires = datetime.fromisoformat(claim["claim_expires_at"])
    assert abs(expires - (datetime.now(UTC) + timedelta(days=7))) < timedelta(minutes=1)
    # Stored hashed, like every other one-time token.
    tokens = await rows(
        api, models.OneTimeToken.__table__, models.OneTimeToken.account_id == buyer.id
    )
    assert [t.purpose for t in tokens] == ["account_claim"]
    assert tokens[0].token_hash != claim["claim_token"]

    [entitlement] = await rows(api, models.Entitlement.__table__)
    assert (entitlement.kind, entitlement.status, entitlement.order_id) == (
        "course",
        "active",
        event.order_id,
    )
    [added] = [
        e
        for e in await api.outbox_events("clients.client_added.v1")
        if e["account_id"] == str(buyer.id)
    ]
    assert added["source"] == "purchased" and added["notify"] is False


async def test_two_orders_for_one_new_email_at_once_make_one_account(
    purchases: Purchases,
) -> None:
    """The real race: each order in its own transaction, concurrently."""
    api = purchases.api
    coach = await make_coach(api)
    sessionmaker = create_sessionmaker(api.engine)
    outbox = Outbox(models.outbox)
    emails = [f"racer-{n}@example.com" for n in range(4)]

    async def apply(event: OrderPaidV1) -> bool:
        async with sessionmaker() as session, session.begin():
            identity = IdentityService(session, api.settings, api.app.state.signer, outbox)
            return await PurchaseService(session, identity).order_paid(event)

    orders = [order_paid(coach, buyer_email=e.upper()) for e in emails for _ in range(2)]
    assert all(await asyncio.gather(*(apply(o) for o in orders)))
    for email in emails:
        assert await count(api, models.Account, models.Account.email == email) == 1
        buyer = await account(api, email)
        assert await count(api, models.Client, models.Client.account_id == buyer.id) == 1
        assert len(await claim_events(api, email)) == 1
        assert await count(api, models.Entitlement, models.Entitlement.account_id == buyer.id) == 2
        purchased = [e for e in (await profile(api, coach, email))["timeline"]]
        assert [e["kind"] for e in purchased].count("purchased") == 3  # joined + two orders

    # The same two orders through the broker again: already applied, nothing changes.
    await purchases.deliver(*orders[:2])
    assert await count(api, models.Entitlement) == len(orders)


# -- an existing account ---------------------------------------------------------------------


async def test_an_existing_account_is_found_by_email_in_any_case_or_by_id(
    purchases: Purchases,
) -> None:
    api = purchases.api
    coach = await make_coach(api)
    buyer = await make_coach(api, email="returning@example.com", business="Own Studio")
    other = await make_coach(api, email="logged-in@example.com", business="Third Studio")
    by_email = order_paid(coach, buyer_email="RETURNING@Example.com")
    # A logged-in buyer may type another address: the account decides.
    by_id = order_paid(
        coach, buyer_account_id=uuid.UUID(other.account_id), buyer_email="typed@example.com"
    )
    await purchases.deliver(by_email, by_id)

    assert await count(api, models.Account) == 3, "no account was made"
    assert await count(api, models.Account, models.Account.email == "typed@example.com") == 0
    assert await claim_events(api, "returning@example.com") == []
    clients = await rows(
        api, models.Client.__table__, models.Client.business_id == uuid.UUID(coach.business_id)
    )
    assert {c.account_id for c in clients} == {
        uuid.UUID(buyer.account_id),
        uuid.UUID(other.account_id),
    }
    assert {c.source for c in clients} == {"purchased"}


async def test_an_existing_client_stays_as_they_are_and_gets_the_purchase_on_the_timeline(
    purchases: Purchases,
) -> None:
    api = purchases.api
    coach = await make_coach(api)
    first = order_paid(coach, buyer_email="twice@example.com", offering_name="Intro")
    second = order_paid(
        coach,
        buyer_email="twice@example.com",
        offering_name="Deep dive",
        amount_minor=9000,
        discount_code="SPRING",
        discount_minor=1000,
    )
    await purchases.deliver(first)
    await purchases.deliver(second)
    assert await count(api, models.Client) == 1
    assert len(await claim_events(api, "twice@example.com")) == 1
    summaries = [e["summary"] for e in (await profile(api, coach, "twice@example.com"))["timeline"]]
    assert "Bought Deep dive for $90.00 (discount SPRING: $10.00 off)" in summaries
    assert "Bought Intro for $120.00" in summaries
    assert summaries.count("Became a client with a purchase") == 1


# -- what each kind gives ------------------------------------------------------------------------


async def test_engagement_gives_credits_that_expire_from_the_payment(
    purchases: Purchases,
) -> None:
    api = purchases.api
    coach = await make_coach(api)
    expiring = order_paid(
        coach,
        kind="engagement",
        offering_name="Five sessions",
        details={"credits": 5, "credit_expiry_days": 30},
    )
    lasting = order_paid(
        coach, kind="engagement", offering_name="Ten sessions", details={"credits": 10}
    )
    await purchases.deliver(expiring, expiring, lasting)

    credits = {c.order_id: c for c in await rows(api, models.Credit.__table__)}
    assert len(credits) == 2
    five, ten = credits[expiring.order_id], credits[lasting.order_id]
    assert (five.total, five.remaining, five.offering_name) == (5, 5, "Five sessions")
    assert five.expires_at == PAID_AT + timedelta(days=30)
    assert (ten.total, ten.remaining, ten.expires_at) == (10, 10, None)
    assert await count(api, models.Entitlement) == 0


async def test_a_group_purchase_adds_the_membership_and_publishes_it_once(
    purchases: Purchases,
) -> None:
    api = purchases.api
    coach = await make_coach(api)
    created = await api.http.post(
        coach.url("/groups"), json={"name": "Morning Yoga"}, headers=coach.headers
    )
    group_id = created.json()["id"]
    event = order_paid(
        coach, kind="group", offering_name="Yoga club", details={"group_id": group_id}
    )
    again = event.model_copy(update={"id": uuid.uuid4()})
    await purchases.deliver(event, event, again)
    # A second order for the same group: already a member, nothing new is published.
    await purchases.deliver(order_paid(coach, kind="group", details={"group_id": group_id}))

    detail = (await api.http.get(coach.url(f"/groups/{group_id}"), headers=coach.headers)).json()
    [member] = detail["members"]
    assert member["email"] == "new.buyer@example.com"
    [published] = await purchases.wait_published("clients.group_member_added.v1", 1)
    assert published["group_id"] == group_id and published["client_id"] == member["id"]
    assert len(await api.outbox_events("clients.group_member_added.v1")) == 1
    timeline = (await profile(api, coach, "new.buyer@example.com"))["timeline"]
    assert "Added to group Morning Yoga by buying Yoga club" in [e["summary"] for e in timeline]
    assert await count(api, models.Entitlement) == 0


async def test_other_kinds_give_an_entitlement_each(purchases: Purchases) -> None:
    api = purchases.api
    coach = await make_coach(api)
    kinds = ["course", "worksheet", "agreement", "package", "appointment"]
    orders = [order_paid(coach, kind=k, offering_name=f"A {k}") for k in kinds]
    await purchases.deliver(*orders, *orders)
    entitlements = await rows(api, models.Entitlement.__table__)
    assert sorted((e.kind, e.offering_name) for e in entitlements) == sorted(
        (k, f"A {k}") for k in kinds
    )
    assert {e.offering_version_id for e in entitlements} == {o.offering_version_id for o in orders}


# -- the buyer's view ------------------------------------------------------------------------------


async def test_my_purchases_shows_the_callers_credits_and_entitlements_per_business_only(
    purchases: Purchases,
) -> None:
    api = purchases.api
    coach = await make_coach(api)
    other_coach = await make_coach(api, business="Other Studio")
    buyer = await make_coach(api, email="buyer@example.com", business="Buyer Studio")
    stranger = await make_coach(api, email="stranger@example.com", business="Stranger Studio")
    await purchases.deliver(
        order_paid(
            coach,
            buyer_email="buyer@example.com",
            kind="engagement",
            offering_name="Five sessions",
            details={"credits": 5, "credit_expiry_days": 30},
            paid_at=datetime.now(UTC),
        ),
        order_paid(coach, buyer_email="buyer@example.com", offering_name="Course"),
        order_paid(other_coach, buyer_email="buyer@example.com", kind="worksheet"),
    )
    # Somebody else's purchase in the same business.
    await purchases.deliver(
        order_paid(
            coach, buyer_email="stranger@example.com", kind="engagement", details={"credits": 2}
        )
    )

    mine = await api.http.get(f"{API}/me/purchases", headers=buyer.headers)
    assert mine.status_code == 200
    by_business = {b["business_name"]: b for b in mine.json()["items"]}
    assert set(by_business) == {"Casey Coaching", "Other Studio"}
    casey = by_business["Casey Coaching"]
    assert casey["business_id"] == coach.business_id
    [credit] = casey["credits"]
    assert (credit["label"], credit["remaining"], credit["total"]) == ("5 of 5 left", 5, 5)
    assert credit["expired"] is False and credit["expires_at"] is not None
    assert [e["offering_name"] for e in casey["entitlements"]] == ["Course"]
    assert [e["kind"] for e in by_business["Other Studio"]["entitlements"]] == ["worksheet"]

    theirs = (await api.http.get(f"{API}/me/purchases", headers=stranger.headers)).json()
    [only] = theirs["items"]
    assert [c["label"] for c in only["credits"]] == ["2 of 2 left"] and only["entitlements"] == []
    nobody = await make_coach(api, email="nobody@example.com", business="Nobody")
    assert (await api.http.get(f"{API}/me/purchases", headers=nobody.headers)).json() == {
        "items": []
    }
    assert (await api.http.get(f"{API}/me/purchases")).status_code == 401


# -- claiming the account ---------------------------------------------------------------------


async def test_the_claim_link_sets_the_password_verifies_and_logs_in_once(
    purchases: Purchases,
) -> None:
    api = purchases.api
    coach = await make_coach(api)
    await purchases.deliver(order_paid(coach, buyer_email="claimer@example.com"))
    [claim] = await claim_events(api, "claimer@example.com")
    token = claim["claim_token"]

    weak = await api.http.post(f"{API}/claims/consume", json={"token": token, "password": "short"})
    assert weak.status_code == 422, "a refused password does not use up the link"
    extra = await api.http.post(
        f"{API}/claims/consume", json={"token": token, "password": PASSWORD, "admin": True}
    )
    assert extra.status_code == 422

    claimed = await api.http.post(
        f"{API}/claims/consume", json={"token": token, "password": PASSWORD}
    )
    assert claimed.status_code == 201, claimed.text
    body = claimed.json()
    assert body["account"]["email"] == "claimer@example.com"
    assert body["account"]["email_verified"] is True
    assert body["next"] == "/home" and body["session_token"] and body["access_token"]
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    [business] = (await api.http.get(f"{API}/me/purchases", headers=headers)).json()["items"]
    assert business["business_id"] == coach.business_id

    again = await api.http.post(
        f"{API}/claims/consume", json={"token": token, "password": PASSWORD}
    )
    assert again.status_code == 410
    await login(api, "claimer@example.com")
    # Not a password reset token, nor any other kind.
    reset = await api.http.post(
        f"{API}/password-resets/consume", json={"token": token, "password": PASSWORD}
    )
    assert reset.status_code == 410


async def test_an_expired_claim_link_is_refused(purchases: Purchases) -> None:
    api = purchases.api
    coach = await make_coach(api)
    await purchases.deliver(order_paid(coach, buyer_email="late@example.com"))
    [claim] = await claim_events(api, "late@example.com")
    async with api.engine.begin() as conn:
        await conn.execute(
            update(models.OneTimeToken)
            .where(models.OneTimeToken.purpose == "account_claim")
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    expired = await api.http.post(
        f"{API}/claims/consume", json={"token": claim["claim_token"], "password": PASSWORD}
    )
    assert expired.status_code == 410
    assert (await account(api, "late@example.com")).password_hash is None
    unknown = await api.http.post(
        f"{API}/claims/consume", json={"token": "x" * 43, "password": PASSWORD}
    )
    assert unknown.status_code == 410
