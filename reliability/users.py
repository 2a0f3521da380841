"""Simulated users for the load scenario (12): aiohttp sessions through the gateway
doing what people do, with think time, every request recorded.

- **visitors**: anonymous, browse a business's packages page and an offering page;
  some buy (a new visitor each time: their own address and email), as the checkout
  page and Stripe.js do it: the checkout form, the card confirmed on the order's
  SetupIntent in localstripe, ``/orders/<id>/pay``, the processing page, the
  confirmation page;
- **clients**: log in, open home, billing and their orders (pages and APIs), the
  packages page of their coach; each may buy once, logged in;
- **coaches**: log in, open their clients, activity and offerings (pages and APIs).

Every request to the gateway is a ``Sample`` (route label, kind, time, status,
seconds); localstripe's calls (Stripe.js's part) are kind ``stripe``.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from reliability.driver import TEST_CARD
from reliability.ledger import Purchase
from reliability.system import ProxiedSystem

PASSWORD = "load testing every page"
MONTHLY = {"type": "recurring", "interval": "month", "interval_count": 1}
GATEWAY_KINDS = ("page", "api", "login", "checkout")  # what the latency criterion covers


@dataclass(frozen=True)
class Sample:
    label: str  # the route, e.g. "GET /b/{slug}"
    kind: str  # page | api | login | checkout | stripe
    at: float  # monotonic start
    status: int  # 0: no answer (connection error, timeout)
    seconds: float


@dataclass
class Recorder:
    samples: list[Sample] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)  # what went wrong, by route

    async def call(
        self,
        http: aiohttp.ClientSession,
        method: str,
        url: str,
        label: str,
        kind: str,
        **kwargs: Any,
    ) -> tuple[int, str, Any]:
        """(status, body, headers); redirects are not followed (each hop is a sample)."""
        started = time.monotonic()
        try:
            async with http.request(method, url, allow_redirects=False, **kwargs) as response:
                body = await response.text()
                status, headers = response.status, response.headers
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.samples.append(Sample(label, kind, started, 0, time.monotonic() - started))
            self.errors[f"{label}: {type(exc).__name__}"] += 1
            return 0, "", {}
        self.samples.append(Sample(label, kind, started, status, time.monotonic() - started))
        return status, body, headers

    def unexpected(self, label: str, status: int, want: tuple[int, ...]) -> bool:
        if status in want:
            return False
        self.errors[f"{label}: {status}"] += 1
        return True


@dataclass(frozen=True)
class Shop:
    """A coach's business as its users find it."""

    business_id: str
    slug: str
    coach_email: str
    token: str  # the coach's bearer token (setup only)
    one_time_id: str
    subscription_id: str


@dataclass
class World:
    """What the users share: the shops, the clients' accounts, what was bought."""

    system: ProxiedSystem
    shops: list[Shop]
    client_accounts: list[tuple[str, Shop]]  # (email, the shop whose client it is)
    recorder: Recorder
    buy_share: float
    deadline: float = 0.0  # monotonic: when the users stop
    purchases: list[Purchase] = field(default_factory=list)
    purchase_failures: Counter[str] = field(default_factory=Counter)
    bought: Counter[str] = field(default_factory=Counter)  # one_time / subscription

    @property
    def gateway(self) -> str:
        return self.system.gateway_url


def unique_address(rng: random.Random) -> str:
    """A client address of a user's own (the gateway trusts one proxy in front)."""
    return f"10.{rng.randrange(250)}.{rng.randrange(250)}.{rng.randrange(1, 250)}"


def _session(address: str, timeout: float = 30) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        headers={"X-Forwarded-For": address},
        # The gateway is reached by IP: cookies must be kept anyway.
        cookie_jar=aiohttp.CookieJar(unsafe=True),
        timeout=aiohttp.ClientTimeout(total=timeout),
    )


def _field(page: str, name: str) -> str | None:
    match = re.search(rf'name="{name}" value="([^"]*)"', page)
    return match.group(1) if match else None


def _data(page: str, name: str) -> str | None:
    match = re.search(rf'data-{name}="([^"]*)"', page)
    return match.group(1) if match else None


# -- setup (not measured) -----------------------------------------------------------------


async def _signup(gateway: str, rng: random.Random, email: str, business: str) -> dict[str, Any]:
    async with (
        _session(unique_address(rng)) as http,
        http.post(
            f"{gateway}/api/v1/clients/signup",
            json={
                "name": "Load User",
                "email": email,
                "password": PASSWORD,
                "business_name": business,
            },
        ) as response,
    ):
        assert response.status == 201, await response.text()
        return dict(await response.json())


async def _until(what: str, attempt: Any, timeout: float = 60) -> Any:
    """Retry ``attempt()`` until it answers something (read models are fed by events)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = await attempt()
        if answer is not None:
            return answer
        if time.monotonic() > deadline:
            raise RuntimeError(f"not done after {timeout} s: {what}")
        await asyncio.sleep(0.3)


async def _offering(gateway: str, shop: dict[str, Any], name: str, billing: dict) -> str:
    headers = {"Authorization": f"Bearer {shop['access_token']}"}
    base = f"{gateway}/api/v1/catalog/businesses/{shop['business']['id']}/offerings"
    body = {
        "name": name,
        "description": f"All about {name}.",
        "kind": "appointment",
        "details": {"duration_minutes": 60},
        "billing": billing,
        "price_minor": 12000,
        "currency": "usd",
        "visibility": "public",
    }
    async with aiohttp.ClientSession(headers=headers) as http:

        async def create() -> dict[str, Any] | None:
            async with http.post(base, json=body) as response:
                if response.status == 404:  # the catalog has not heard of the business yet
                    return None
                assert response.status == 201, await response.text()
                return dict(await response.json())

        created = await _until("the catalog knows the business", create)
        async with http.post(f"{base}/{created['id']}/publish") as response:
            assert response.status == 200, await response.text()
    return str(created["id"])


async def build_world(
    system: ProxiedSystem,
    rng: random.Random,
    *,
    coaches: int,
    clients: int,
    buy_share: float,
) -> World:
    """The coaches' businesses (a one-time and a monthly offering each), the clients'
    accounts (each added to one business), and every checkout page answering."""
    gateway = system.gateway_url
    shops: list[Shop] = []
    for k in range(coaches):
        email = f"load-coach-{k}-{uuid.uuid4().hex[:6]}@example.com"
        made = await _signup(gateway, rng, email, f"Load Studio {k}")
        one_time = await _offering(gateway, made, "Coaching hour", {"type": "one_time"})
        monthly = await _offering(gateway, made, "Monthly coaching", MONTHLY)
        business = made["business"]
        shops.append(
            Shop(business["id"], business["slug"], email, made["access_token"], one_time, monthly)
        )
    accounts: list[tuple[str, Shop]] = []
    for k in range(clients):
        email = f"load-client-{k}-{uuid.uuid4().hex[:6]}@example.com"
        await _signup(gateway, rng, email, f"Client {k}'s own practice")
        shop = shops[k % len(shops)]
        async with (
            aiohttp.ClientSession(headers={"Authorization": f"Bearer {shop.token}"}) as http,
            http.post(
                f"{gateway}/api/v1/clients/businesses/{shop.business_id}/invitations",
                json={"addresses": email},
            ) as response,
        ):
            assert response.status == 200, await response.text()
            assert (await response.json())["results"][0]["outcome"] == "added"
        accounts.append((email, shop))
    async with aiohttp.ClientSession() as http:
        for shop in shops:
            for offering in (shop.one_time_id, shop.subscription_id):
                url = f"{gateway}/b/{shop.slug}/offerings/{offering}/checkout"

                async def answers(url: str = url) -> bool | None:
                    async with http.get(url) as response:
                        return True if response.status == 200 else None

                await _until("the storefront knows the offering", answers)
    return World(system, shops, accounts, Recorder(), buy_share)


# -- what users do ------------------------------------------------------------------------


async def _think(rng: random.Random) -> None:
    await asyncio.sleep(rng.uniform(0.5, 2.0))


async def _login(world: World, http: aiohttp.ClientSession, email: str) -> bool:
    rec, gateway = world.recorder, world.gateway
    status, page, _ = await rec.call(http, "GET", f"{gateway}/login", "GET /login", "login")
    csrf = _field(page, "csrf_token")
    if rec.unexpected("GET /login", status, (200,)) or csrf is None:
        return False
    status, _, _ = await rec.call(
        http,
        "POST",
        f"{gateway}/login",
        "POST /login",
        "login",
        data={"email": email, "password": PASSWORD, "csrf_token": csrf},
    )
    return not rec.unexpected("POST /login", status, (303,))


async def checkout(
    world: World,
    http: aiohttp.ClientSession,
    rng: random.Random,
    shop: Shop,
    *,
    email: str | None,
) -> None:
    """One purchase as the checkout page and Stripe.js make it; ``email`` None: the
    session is logged in (no name or email asked)."""
    rec, gateway = world.recorder, world.gateway
    kind = "subscription" if rng.random() < 0.5 else "one_time"
    offering = shop.subscription_id if kind == "subscription" else shop.one_time_id
    path = f"/b/{shop.slug}/offerings/{offering}/checkout"
    label = "/b/{slug}/offerings/{id}/checkout"
    status, page, _ = await rec.call(http, "GET", gateway + path, f"GET {label}", "checkout")
    csrf, key = _field(page, "csrf_token"), _field(page, "idempotency_key")
    if rec.unexpected(f"GET {label}", status, (200,)) or not csrf or not key:
        world.purchase_failures["checkout page"] += 1
        return
    await _think(rng)
    form = {"csrf_token": csrf, "idempotency_key": key}
    if email is not None:
        form |= {"name": "Load Visitor", "email": email}
    status, page, _ = await rec.call(
        http, "POST", gateway + path, f"POST {label}", "checkout", data=form
    )
    order_id, secret = _data(page, "order"), _data(page, "client-secret")
    pay_csrf, back = _data(page, "csrf"), _data(page, "back")
    publishable_key = _data(page, "publishable-key") or ""
    buyer = email or _data(page, "buyer-email")
    if rec.unexpected(f"POST {label}", status, (200,)) or not (order_id and secret and buyer):
        world.purchase_failures["order not created"] += 1
        return
    await _think(rng)  # typing the card
    method = await _confirm_card_setup(world, publishable_key, secret)
    if method is None:
        world.purchase_failures["card setup refused by localstripe"] += 1
        return
    status, body, _ = await rec.call(
        http,
        "POST",
        f"{gateway}/orders/{order_id}/pay",
        "POST /orders/{id}/pay",
        "checkout",
        data={"csrf_token": pay_csrf or "", "back": back or "", "payment_method_id": method},
        headers={"Accept": "application/json"},
    )
    answer = _json(body)
    if rec.unexpected("POST /orders/{id}/pay", status, (200,)) or answer.get("status") != "paid":
        world.purchase_failures[f"pay answered {status} {answer.get('status')}"] += 1
        return
    world.purchases.append(Purchase(uuid.UUID(order_id), buyer.lower(), granted=True))
    world.bought[kind] += 1
    # The browser goes on to the processing page, which sends it to the confirmation.
    url = gateway + str(answer.get("next") or f"/orders/{order_id}/processing")
    status, _, headers = await rec.call(http, "GET", url, "GET /orders/{id}/processing", "checkout")
    if rec.unexpected("GET /orders/{id}/processing", status, (200, 303)):
        return
    if status == 303:
        status, _, _ = await rec.call(
            http, "GET", gateway + headers["Location"], "GET /orders/{id}", "checkout"
        )
        rec.unexpected("GET /orders/{id}", status, (200,))


def _json(body: str) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


async def _confirm_card_setup(world: World, key: str, client_secret: str) -> str | None:
    """What Stripe.js's confirmCardSetup does: the card, on the order's SetupIntent."""
    intent = client_secret.split("_secret_", 1)[0]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        status, body, _ = await world.recorder.call(
            http,
            "POST",
            f"{world.system.stripe_url}/v1/setup_intents/{intent}/confirm",
            "localstripe confirm SetupIntent",
            "stripe",
            data={
                "key": key,
                "client_secret": client_secret,
                "use_stripe_sdk": "true",
                "payment_method_data[type]": "card",
                "payment_method_data[card][number]": TEST_CARD,
                "payment_method_data[card][exp_month]": "12",
                "payment_method_data[card][exp_year]": "2034",
                "payment_method_data[card][cvc]": "123",
            },
        )
    method = _json(body).get("payment_method")
    return str(method) if status == 200 and method else None


async def _pages(
    world: World,
    http: aiohttp.ClientSession,
    rng: random.Random,
    routes: list[tuple[str, str, str]],
) -> None:
    """GET each (url path, route label, kind), thinking in between."""
    for path, label, kind in routes:
        if time.monotonic() >= world.deadline:
            return
        status, _, _ = await world.recorder.call(
            http, "GET", world.gateway + path, f"GET {label}", kind
        )
        world.recorder.unexpected(f"GET {label}", status, (200,))
        await _think(rng)


async def visitor(world: World, rng: random.Random) -> None:
    while time.monotonic() < world.deadline:
        shop = rng.choice(world.shops)
        offering = rng.choice((shop.one_time_id, shop.subscription_id))
        async with _session(unique_address(rng)) as http:  # a new visitor
            await _pages(
                world,
                http,
                rng,
                [
                    (f"/b/{shop.slug}", "/b/{slug}", "page"),
                    (f"/b/{shop.slug}/offerings/{offering}", "/b/{slug}/offerings/{id}", "page"),
                ],
            )
            if time.monotonic() < world.deadline and rng.random() < world.buy_share:
                email = f"load-buyer-{uuid.uuid4().hex[:12]}@example.com"
                await checkout(world, http, rng, shop, email=email)
                await _think(rng)


async def client(world: World, rng: random.Random, email: str, shop: Shop) -> None:
    async with _session(unique_address(rng)) as http:
        if not await _login(world, http, email):
            return
        has_bought = False
        while time.monotonic() < world.deadline:
            await _pages(
                world,
                http,
                rng,
                [
                    ("/home", "/home", "page"),
                    ("/billing", "/billing", "page"),
                    ("/api/v1/payments/me/orders", "/api/v1/payments/me/orders", "api"),
                    ("/api/v1/payments/me/billing", "/api/v1/payments/me/billing", "api"),
                    (f"/b/{shop.slug}", "/b/{slug} (logged in)", "page"),
                ],
            )
            # Each client buys at most once: the ledger counts receipts per buyer.
            buys = rng.random() < world.buy_share * 2
            if buys and not has_bought and time.monotonic() < world.deadline:
                has_bought = True
                await checkout(world, http, rng, shop, email=None)


async def coach(world: World, rng: random.Random, shop: Shop) -> None:
    b = shop.business_id
    async with _session(unique_address(rng)) as http:
        if not await _login(world, http, shop.coach_email):
            return
        while time.monotonic() < world.deadline:
            await _pages(
                world,
                http,
                rng,
                [
                    (f"/businesses/{b}/clients", "/businesses/{id}/clients", "page"),
                    (f"/businesses/{b}/activity", "/businesses/{id}/activity", "page"),
                    (f"/businesses/{b}/offerings", "/businesses/{id}/offerings", "page"),
                    (
                        f"/api/v1/clients/businesses/{b}/clients",
                        "/api/v1/clients/businesses/{id}/clients",
                        "api",
                    ),
                    (
                        f"/api/v1/payments/businesses/{b}/activity",
                        "/api/v1/payments/businesses/{id}/activity",
                        "api",
                    ),
                    (
                        f"/api/v1/catalog/businesses/{b}/offerings",
                        "/api/v1/catalog/businesses/{id}/offerings",
                        "api",
                    ),
                    (
                        f"/api/v1/payments/businesses/{b}/orders",
                        "/api/v1/payments/businesses/{id}/orders",
                        "api",
                    ),
                ],
            )
