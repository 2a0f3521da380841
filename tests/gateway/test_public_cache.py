"""The gateway's cache of anonymous public catalog reads.

Unit checks of the cache itself, then the real gateway in front of a fake
catalog (counting the calls it gets) with invalidation over the real broker.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aio_pika
import httpx
import jwt
import pytest
import uvicorn
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from yarl import URL

from gateway.cache import CachedResponse, PublicCache, cacheable_api_path, storable_response
from gateway.config import GatewaySettings
from gateway.main import build_app
from gateway.state import GatewayState
from kit.contracts.catalog import OfferingPublishedV1
from kit.messaging import Broker, Topology
from tests.support import infra
from tests.support.netproxy import CuttableProxy
from tests.support.tokens import claims

PACKAGES = "/api/v1/catalog/public/businesses/{slug}/packages"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def listening_cache(**kwargs: Any) -> PublicCache:
    cache = PublicCache(**{"ttl_seconds": 60, "max_entries": 3, **kwargs})
    cache.set_listening(True)
    return cache


# -- the cache on its own ----------------------------------------------------


def test_entries_are_bounded_least_recently_used_first() -> None:
    cache = listening_cache(max_entries=3)
    for key in "abc":
        assert cache.put(key, key.upper(), cache.ticket())
    assert cache.lookup("a") == "A"  # a is now the most recently used
    cache.put("d", "D", cache.ticket())
    assert len(cache) == 3
    assert cache.lookup("b") is None, "the least recently used entry went first"
    assert [cache.lookup(k) for k in "acd"] == ["A", "C", "D"]


def test_entries_expire_after_the_ttl() -> None:
    clock = Clock()
    cache = listening_cache(ttl_seconds=60, clock=clock)
    cache.put("k", "v", cache.ticket())
    clock.now += 59.9
    assert cache.lookup("k") == "v"
    clock.now += 0.2
    assert cache.lookup("k") is None
    assert len(cache) == 0


def test_a_ttl_of_zero_disables_the_cache() -> None:
    cache = listening_cache(ttl_seconds=0)
    assert not cache.enabled and not cache.active
    assert cache.ticket() is None
    assert not cache.put("k", "v", 0)
    assert cache.lookup("k") is None


def test_the_cache_is_bypassed_and_empty_while_the_listener_is_not_connected() -> None:
    cache = PublicCache(ttl_seconds=60, max_entries=10)
    assert not cache.active, "not listening yet: bypassed"
    assert cache.ticket() is None
    assert not cache.put("k", "v", cache.ticket())

    cache.set_listening(True)
    cache.put("k", "v", cache.ticket())
    assert cache.lookup("k") == "v"

    cache.set_listening(False)  # connection lost
    assert len(cache) == 0
    assert cache.lookup("k") is None
    assert not cache.put("k", "v", cache.ticket())

    cache.set_listening(True)  # back: starts empty (events may have been missed)
    assert cache.lookup("k") is None


def test_a_value_fetched_before_an_invalidation_is_not_stored_after_it() -> None:
    cache = listening_cache()
    ticket = cache.ticket()  # a request starts fetching...
    cache.clear()  # ...a catalog event arrives meanwhile...
    assert not cache.put("k", "stale", ticket)  # ...so its answer is not kept
    assert cache.lookup("k") is None

    ticket = cache.ticket()
    cache.set_listening(False)
    cache.set_listening(True)  # a reconnect in between counts the same
    assert not cache.put("k", "stale", ticket)


async def test_cached_calls_the_producer_once_and_never_stores_none() -> None:
    cache = listening_cache()
    calls = 0

    async def produce() -> dict[str, int] | None:
        nonlocal calls
        calls += 1
        return {"n": calls}

    assert await cache.cached("k", produce) == {"n": 1}
    assert await cache.cached("k", produce) == {"n": 1}
    assert calls == 1

    async def nothing() -> None:
        return None

    assert await cache.cached("none", nothing) is None
    assert len(cache) == 1

    cache.set_listening(False)
    assert await cache.cached("k", produce) == {"n": 2}, "bypassed: always produced"


async def test_get_then_set_stores_only_what_this_request_missed_before_any_change() -> None:
    cache = listening_cache()
    assert not await cache.set("k", "no get first"), "set without a get stores nothing"
    assert await cache.get("k") is None
    assert await cache.set("k", "fresh")
    assert await cache.get("k") == "fresh"

    # A request that missed before an invalidation cannot store what it fetched.
    assert await cache.get("other") is None
    cache.clear()
    assert not await cache.set("other", "stale")
    assert await cache.get("other") is None

    # Requests (tasks) are separate: one request's miss does not let another one store.
    async def request_that_gets() -> Any:
        return await cache.get("third")

    async def request_that_only_sets() -> bool:
        return await cache.set("third", "value")

    assert await asyncio.create_task(request_that_gets()) is None
    assert not await asyncio.create_task(request_that_only_sets())

    cache.set_listening(False)
    assert await cache.get("k") is None
    assert not await cache.set("k", "while bypassed")


def test_only_plain_200_answers_are_storable() -> None:
    json_type = (b"content-type", b"application/json")
    ok = storable_response(200, [json_type, (b"x-other", b"1")], b"{}", 100)
    assert ok == CachedResponse(200, (json_type,), b"{}")
    assert storable_response(404, [json_type], b"{}", 100) is None
    assert storable_response(200, [json_type, (b"set-cookie", b"a=b")], b"{}", 100) is None
    assert storable_response(200, [(b"cache-control", b"no-store")], b"{}", 100) is None
    assert storable_response(200, [(b"cache-control", b"private")], b"{}", 100) is None
    assert storable_response(200, [(b"vary", b"Accept-Language")], b"{}", 100) is None
    assert storable_response(200, [(b"content-encoding", b"gzip")], b"{}", 100) is None
    assert storable_response(200, [json_type], b"x" * 101, 100) is None


def test_only_allow_listed_paths_are_cacheable() -> None:
    assert cacheable_api_path(PACKAGES.format(slug="harbour-coaching"))
    assert not cacheable_api_path("/api/v1/catalog/public/businesses/a/b/packages")
    assert not cacheable_api_path("/api/v1/catalog/public/businesses/a/offerings/x")
    assert not cacheable_api_path("/api/v1/catalog/businesses/x/offerings")


# -- the real gateway, a fake catalog, the real broker -------------------------

CALLS = web.AppKey("calls", list[tuple[str, str | None]])
JWKS = web.AppKey("jwks", dict[str, Any])


async def packages(request: web.Request) -> web.Response:
    slug = request.match_info["slug"]
    request.app[CALLS].append((slug, request.headers.get("Authorization")))
    if slug == "missing":
        return web.json_response({"title": "Not found"}, status=404)
    headers = {"Set-Cookie": "tracking=1"} if slug == "sets-cookie" else {}
    body = {"business": {"slug": slug}, "call": len(request.app[CALLS])}
    return web.json_response(body, headers=headers)


async def session_token(request: web.Request) -> web.Response:
    return web.json_response({"title": "Unknown session"}, status=401)


async def jwks(request: web.Request) -> web.Response:
    return web.json_response(request.app[JWKS])


@dataclass
class Rig:
    gateway: str
    state: GatewayState
    calls: list[tuple[str, str | None]]
    broker_link: CuttableProxy
    amqp_url: str
    topology: Topology
    token: str

    def upstream_calls(self, slug: str) -> int:
        return sum(1 for s, _ in self.calls if s == slug)

    async def publish_catalog_event(self, *, mandatory: bool = True) -> None:
        event = OfferingPublishedV1(
            business_id=uuid.uuid4(),
            offering_id=uuid.uuid4(),
            version_id=uuid.uuid4(),
            version=1,
            offering_name="Intro session",
            kind="appointment",
            visibility="public",
            price_minor=12000,
            currency="USD",
            billing={"type": "one_time"},
        )
        broker = Broker(self.amqp_url, self.topology, "test-publisher")
        try:
            exchange = await broker.events_exchange()
            await exchange.publish(
                aio_pika.Message(
                    event.model_dump_json().encode(),
                    content_type="application/json",
                    message_id=str(event.id),
                    type=event.name,
                ),
                routing_key=event.name,
                mandatory=mandatory,
            )
        finally:
            await broker.close()


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture
async def rig(
    amqp_url: str, broker_namespace: infra.BrokerNamespace, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Rig]:
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    x = base64.urlsafe_b64encode(public).rstrip(b"=").decode()
    kid = "test-key"

    upstream = web.Application()
    upstream[CALLS] = []
    upstream[JWKS] = {
        "keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA"}]
    }
    upstream.router.add_get("/api/v1/catalog/public/businesses/{slug}/packages", packages)
    upstream.router.add_post("/api/v1/clients/sessions/token", session_token)
    upstream.router.add_get("/jwks.json", jwks)
    runner = web.AppRunner(upstream)
    await runner.setup()
    upstream_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", upstream_port).start()
    upstream_url = f"http://127.0.0.1:{upstream_port}"

    # The gateway reaches the broker through a link the test can cut.
    real_broker = URL(amqp_url)
    link = await CuttableProxy(real_broker.host or "127.0.0.1", real_broker.port or 5672).start()
    gateway_amqp = str(real_broker.with_host("127.0.0.1").with_port(link.port))

    states: list[GatewayState] = []
    create = GatewayState.create.__func__  # type: ignore[attr-defined]

    def capture(cls: type[GatewayState], settings: GatewaySettings) -> GatewayState:
        state: GatewayState = create(cls, settings)
        states.append(state)
        return state

    monkeypatch.setattr(GatewayState, "create", classmethod(capture))

    port = free_port()
    settings = GatewaySettings(
        dev_mode=True,
        port=port,
        clients_url=upstream_url,
        catalog_url=upstream_url,
        notifications_url=f"http://127.0.0.1:{free_port()}",
        jwks_url=f"{upstream_url}/jwks.json",
        amqp_url=gateway_amqp,
        broker_namespace=broker_namespace.prefix,
        public_cache_seconds=60,
        log_format="console",
    )
    server = uvicorn.Server(
        uvicorn.Config(
            build_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    [state] = states
    assert state.cache_listener is not None
    state.cache_listener.retry_seconds = 0.5
    token = jwt.encode(claims(), key, algorithm="EdDSA", headers={"kid": kid})
    yield Rig(
        f"http://127.0.0.1:{port}",
        state,
        upstream[CALLS],
        link,
        amqp_url,
        Topology(broker_namespace.prefix),
        token,
    )
    server.should_exit = True
    await task
    await link.close()
    await runner.cleanup()


async def test_anonymous_reads_are_cached_and_catalog_events_invalidate_them(rig: Rig) -> None:
    cache = rig.state.public_cache
    path = PACKAGES.format(slug="harbour")
    async with httpx.AsyncClient(base_url=rig.gateway) as client:

        async def listening() -> bool:
            return cache.active

        await eventually(listening, "the cache listener to connect")

        first = await client.get(path)
        second = await client.get(path, headers={"X-Request-ID": "second-request"})
        assert first.status_code == second.status_code == 200
        assert first.headers["x-cache"] == "miss"
        assert second.headers["x-cache"] == "hit"
        assert second.json() == first.json()
        assert rig.upstream_calls("harbour") == 1, "two anonymous GETs, one upstream call"
        # A hit carries the gateway's usual headers.
        assert second.headers["x-request-id"] == "second-request"
        assert second.headers["x-frame-options"] == "DENY"
        assert second.headers["content-type"] == "application/json; charset=utf-8"
        assert int(second.headers["content-length"]) == len(second.content)

        # Somebody logged in (or claiming to be) always reaches the service.
        for _ in range(2):
            with_cookie = await client.get(
                path, headers={"Cookie": "clientele_session=some-session; clientele_csrf=x"}
            )
            with_bearer = await client.get(path, headers={"Authorization": f"Bearer {rig.token}"})
            assert with_cookie.status_code == with_bearer.status_code == 200
            assert with_cookie.headers["x-cache"] == with_bearer.headers["x-cache"] == "bypass"
        assert rig.upstream_calls("harbour") == 5
        assert rig.calls[-1] == ("harbour", f"Bearer {rig.token}")
        # ...and what they got was not cached for anonymous visitors either.
        assert (await client.get(path)).headers["x-cache"] == "hit"
        # A csrf cookie alone is still anonymous.
        csrf_only = await client.get(path, headers={"Cookie": "clientele_csrf=x"})
        assert csrf_only.headers["x-cache"] == "hit"
        assert rig.upstream_calls("harbour") == 5

        # Not 200, or setting a cookie: never cached.
        for slug in ("missing", "sets-cookie"):
            for _ in range(2):
                response = await client.get(PACKAGES.format(slug=slug))
                assert response.headers["x-cache"] == "miss"
            assert rig.upstream_calls(slug) == 2
        # Other paths are plain proxying, without X-Cache.
        other = await client.get("/api/v1/catalog/public/businesses/harbour/offerings/x")
        assert "x-cache" not in other.headers

        # A catalog event on the real broker empties the cache.
        await rig.publish_catalog_event()

        async def refetched() -> bool:
            response = await client.get(path)
            return response.headers["x-cache"] == "miss"

        await eventually(refetched, "the catalog event to clear the cache")
        assert rig.upstream_calls("harbour") == 6
        assert (await client.get(path)).headers["x-cache"] == "hit"


async def test_the_cache_is_bypassed_while_the_broker_is_unreachable(rig: Rig) -> None:
    cache = rig.state.public_cache
    path = PACKAGES.format(slug="harbour")
    async with httpx.AsyncClient(base_url=rig.gateway) as client:

        async def cached() -> bool:
            return (await client.get(path)).headers["x-cache"] == "hit"

        await eventually(cached, "a cached answer")
        calls = rig.upstream_calls("harbour")

        rig.broker_link.cut()  # the gateway loses the broker and cannot reconnect

        async def bypassed() -> bool:
            return not cache.active

        await eventually(bypassed, "the listener to notice the lost connection")
        for _ in range(3):
            response = await client.get(path)
            assert response.status_code == 200
            assert response.headers["x-cache"] == "bypass"
        assert rig.upstream_calls("harbour") == calls + 3
        assert len(cache) == 0
        # Readiness does not depend on the cache's listener.
        assert (await client.get("/healthz")).status_code == 200

        # An event published now never reaches this gateway (its queue went with the
        # connection, so nothing is bound); the reconnect clears anyway.
        await rig.publish_catalog_event(mandatory=False)
        rig.broker_link.restore()

        async def listening() -> bool:
            return cache.active

        await eventually(listening, "the listener to reconnect")
        assert (await client.get(path)).headers["x-cache"] == "miss"
        assert (await client.get(path)).headers["x-cache"] == "hit"
        assert rig.upstream_calls("harbour") == calls + 4


def _close_connection_named(name: str) -> bool:
    listed = subprocess.run(
        ["rabbitmqctl", "list_connections", "pid", "client_properties", "-q"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for line in listed.splitlines():
        pid, _, properties = line.partition("\t")
        if f'{{"connection_name","{name}"}}' in properties:
            subprocess.run(
                ["rabbitmqctl", "close_connection", pid, "test: connection dropped"],
                capture_output=True,
                check=True,
            )
            return True
    return False


async def test_a_connection_closed_by_the_broker_bypasses_until_reconnected(rig: Rig) -> None:
    """What a broker restart does, for this gateway's connection only (other tests share it)."""
    listener = rig.state.cache_listener
    assert listener is not None
    cache = rig.state.public_cache
    path = PACKAGES.format(slug="harbour")
    async with httpx.AsyncClient(base_url=rig.gateway) as client:

        async def cached() -> bool:
            return (await client.get(path)).headers["x-cache"] == "hit"

        await eventually(cached, "a cached answer")
        listener.retry_seconds = 2.0  # a window wide enough to observe
        closed = await asyncio.to_thread(
            _close_connection_named, f"{listener.process_name}-consume"
        )
        assert closed, "the gateway's broker connection was not found"
        seen: list[str] = []

        async def bypassed() -> bool:
            seen.append((await client.get(path)).headers["x-cache"])
            return seen[-1] == "bypass"

        await eventually(bypassed, "a bypassed answer after the connection closed")
        calls = rig.upstream_calls("harbour")
        assert (await client.get(path)).headers["x-cache"] == "bypass"
        assert rig.upstream_calls("harbour") == calls + 1

        async def back() -> bool:
            return cache.active

        await eventually(back, "the listener to reconnect")
        assert (await client.get(path)).headers["x-cache"] == "miss"
        assert (await client.get(path)).headers["x-cache"] == "hit"
