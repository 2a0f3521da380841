"""What the scenarios drive the system with: a coach and business, pending orders as
``/pay`` leaves them, and signed Stripe webhooks sent as Stripe sends them (again
until answered 2xx), the way bench/webhooks.py and tests/e2e/test_replicas.py do."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from devtools.processes import LOCAL_STRIPE_API_KEY
from kit.db import create_engine, create_sessionmaker, utcnow
from payments import models as payments_models
from reliability.ledger import Purchase
from reliability.system import ProxiedSystem

TEST_CARD = "4242424242424242"
DECLINED_CARD = "4000000000000341"  # attaches, every charge declined
AMOUNT = 12000


def buyer_of(order_id: uuid.UUID) -> str:
    return f"buyer-{order_id.hex[:12]}@example.com"


def sign(payload: bytes, secret: str) -> str:
    t = int(time.time())
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def stripe_event(type_: str, obj: dict[str, Any], event_id: str | None = None) -> bytes:
    return json.dumps(
        {
            "id": event_id or f"evt_{uuid.uuid4().hex[:24]}",
            "object": "event",
            "api_version": "2024-06-20",
            "created": int(time.time()),
            "type": type_,
            "livemode": False,
            "data": {"object": obj},
        }
    ).encode()


async def signup(system: ProxiedSystem, name: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{system.gateway_url}/api/v1/clients/signup",
            json={
                "name": "Reliability Coach",
                "email": f"coach-{uuid.uuid4().hex[:8]}@example.com",
                "password": "counting every purchase",
                "business_name": name,
            },
        ) as response,
    ):
        assert response.status == 201, await response.text()
        return dict(await response.json())


class Stripe:
    """The few localstripe calls a scenario makes as Stripe.js or a buyer would."""

    def __init__(self, system: ProxiedSystem) -> None:
        self.base = system.stripe_url
        self.auth = {"Authorization": aiohttp.encode_basic_auth(LOCAL_STRIPE_API_KEY, "")}

    async def _post(self, http: aiohttp.ClientSession, path: str, data: dict[str, str]) -> Any:
        async with http.post(f"{self.base}{path}", data=data) as response:
            return await response.json()

    async def card(self, http: aiohttp.ClientSession, number: str) -> str:
        body = await self._post(
            http,
            "/v1/payment_methods",
            {
                "type": "card",
                "card[number]": number,
                "card[exp_month]": "12",
                "card[exp_year]": "2034",
                "card[cvc]": "123",
            },
        )
        return str(body["id"])

    async def charge(
        self, http: aiohttp.ClientSession, payment_method: str, metadata: dict[str, str]
    ) -> dict[str, Any]:
        """A PaymentIntent made, then confirmed with the card (a decline answers 402
        and leaves it ``requires_payment_method``); read back as Stripe keeps it."""
        data = {
            "amount": str(AMOUNT),
            "currency": "usd",
            "payment_method": payment_method,
            **{f"metadata[{k}]": v for k, v in metadata.items()},
        }
        created = await self._post(http, "/v1/payment_intents", data)
        if "id" not in created:
            raise RuntimeError(f"localstripe: {created}")
        await self._post(http, f"/v1/payment_intents/{created['id']}/confirm", {})
        return await self.intent(http, created["id"])

    async def intent(self, http: aiohttp.ClientSession, intent_id: str) -> dict[str, Any]:
        async with http.get(f"{self.base}/v1/payment_intents/{intent_id}") as response:
            return dict(await response.json())

    def session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(headers=self.auth)


async def template_intent(system: ProxiedSystem) -> dict[str, Any]:
    """One PaymentIntent that succeeded in localstripe, to copy (bench/webhooks.py)."""
    stripe = Stripe(system)
    async with stripe.session() as http:
        intent = await stripe.charge(http, await stripe.card(http, TEST_CARD), {})
    assert intent["status"] == "succeeded", intent
    return intent


def copies(template: dict[str, Any], n: int) -> list[tuple[uuid.UUID, dict[str, Any]]]:
    """n (order id, PaymentIntent) pairs: the template with its own ids and metadata."""
    made = []
    for _ in range(n):
        order_id, intent_id = uuid.uuid4(), f"pi_{uuid.uuid4().hex[:14]}"
        made.append(
            (
                order_id,
                {
                    **template,
                    "id": intent_id,
                    "client_secret": f"{intent_id}_secret_{uuid.uuid4().hex[:16]}",
                    "metadata": {"order_id": str(order_id)},
                },
            )
        )
    return made


async def insert_orders(
    system: ProxiedSystem, business: dict[str, Any], orders: list[tuple[uuid.UUID, str]]
) -> None:
    """Pending orders as /pay leaves them: (order id, its PaymentIntent id)."""
    engine = create_engine(system.direct_urls["payments"], pool_size=1)
    now = utcnow()
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            session.add_all(
                payments_models.Order(
                    id=order_id,
                    business_id=uuid.UUID(business["id"]),
                    business_name=business["name"],
                    offering_id=uuid.uuid4(),
                    offering_version_id=uuid.uuid4(),
                    offering_name="Reliability course",
                    kind="course",
                    details={},
                    billing={"type": "one_time"},
                    buyer_email=buyer_of(order_id),
                    buyer_name="Reliable Buyer",
                    amount_minor=AMOUNT,
                    currency="USD",
                    discount_minor=0,
                    status=payments_models.PENDING,
                    stripe_payment_intent_id=intent_id,
                    idempotency_key=f"reliability-{order_id}",
                    created_at=now,
                    updated_at=now,
                    payment_started_at=now,
                )
                for order_id, intent_id in orders
            )
    finally:
        await engine.dispose()


async def copied_purchases(
    system: ProxiedSystem, business: dict[str, Any], n: int
) -> tuple[list[Purchase], list[dict[str, Any]]]:
    """n pending orders whose (copied) PaymentIntents succeeded; their intents."""
    made = copies(await template_intent(system), n)
    await insert_orders(system, business, [(o, pi["id"]) for o, pi in made])
    return [Purchase(o, buyer_of(o), granted=True) for o, _ in made], [pi for _, pi in made]


@dataclass
class Webhooks:
    """Posts signed events to the gateway's /webhooks/stripe; counts the answers."""

    system: ProxiedSystem
    in_flight: int = 16
    statuses: Counter[str] = field(default_factory=Counter)
    attempts: int = 0
    never_taken: int = 0

    def __post_init__(self) -> None:
        self.url = f"{self.system.gateway_url}/webhooks/stripe"
        self.secret = self.system.webhook_secret
        self.http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.in_flight + 8),
            timeout=aiohttp.ClientTimeout(total=30),
        )

    async def close(self) -> None:
        await self.http.close()

    async def post(self, payload: bytes, *, tries: int = 300) -> str:
        """As Stripe does: an event that got no 2xx is sent again (signed anew)."""
        status = "none"
        for _ in range(tries):
            self.attempts += 1
            headers = {
                "Content-Type": "application/json",
                "Stripe-Signature": sign(payload, self.secret),
            }
            try:
                async with self.http.post(self.url, data=payload, headers=headers) as response:
                    await response.read()
                    status = str(response.status)
            except (aiohttp.ClientError, TimeoutError) as exc:
                status = type(exc).__name__
            self.statuses[status] += 1
            if status.startswith("2"):
                return status
            await asyncio.sleep(0.5)
        self.never_taken += 1
        return status

    async def stream(self, payloads: list[bytes], rate: float = 0.0) -> float:
        """Every payload, ``in_flight`` at a time; ``rate`` > 0 paces the starts (per s).
        Returns the seconds it took."""
        slots = asyncio.Semaphore(self.in_flight)
        started = time.monotonic()

        async def one(n: int, payload: bytes) -> None:
            if rate > 0:
                await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
            async with slots:
                await self.post(payload)

        await asyncio.gather(*(one(n, p) for n, p in enumerate(payloads)))
        return time.monotonic() - started

    def summary(self) -> str:
        return f"{self.attempts} webhook posts, answers {dict(self.statuses)}" + (
            f", {self.never_taken} NEVER TAKEN" if self.never_taken else ""
        )
