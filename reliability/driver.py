"""What the scenarios drive the system with: a coach and business, pending orders as
``/pay`` leaves them, and signed Stripe webhooks sent as Stripe sends them (again
until answered 2xx), the way bench/webhooks.py and tests/e2e/test_replicas.py do."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from devtools import stripe_driver
from devtools.processes import LOCAL_STRIPE_API_KEY
from reliability.ledger import Purchase
from reliability.system import ProxiedSystem

TEST_CARD = "4242424242424242"
DECLINED_CARD = "4000000000000341"  # attaches, every charge declined
AMOUNT = stripe_driver.AMOUNT_MINOR


buyer_of = stripe_driver.buyer_email
sign = stripe_driver.sign
stripe_event = stripe_driver.stripe_event


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


copies = stripe_driver.intent_copies


async def insert_orders(
    system: ProxiedSystem, business: dict[str, Any], orders: list[tuple[uuid.UUID, str]]
) -> None:
    """Pending orders as /pay leaves them: (order id, its PaymentIntent id)."""
    await stripe_driver.insert_pending_orders(
        system.direct_urls["payments"], business, orders, label="reliability"
    )


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
    latencies: list[float] = field(default_factory=list)  # seconds, every attempt

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
            started = time.monotonic()
            try:
                async with self.http.post(self.url, data=payload, headers=headers) as response:
                    await response.read()
                    status = str(response.status)
            except (aiohttp.ClientError, TimeoutError) as exc:
                status = type(exc).__name__
            self.attempted(started, time.monotonic(), status)
            if status.startswith("2"):
                return status
            await asyncio.sleep(0.5)
        self.never_taken += 1
        return status

    def attempted(self, started: float, ended: float, status: str) -> None:
        """One attempt's answer (an HTTP status, or the client-side error's name)."""
        self.statuses[status] += 1
        self.latencies.append(ended - started)

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
