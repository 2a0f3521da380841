"""What the gateway's proxy forwards and answers, observed from an echo upstream.

The echo server stands where a service would, so the test sees exactly the
request the gateway sent on (the real services are exercised in tests/e2e).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
import uvicorn
from aiohttp import web

from gateway.config import GatewaySettings
from gateway.main import build_app


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Rig:
    gateway: str
    seen: list[dict[str, str]]
    bodies: list[bytes]


SEEN = web.AppKey("seen", list[dict[str, str]])
BODIES = web.AppKey("bodies", list[bytes])


async def echo(request: web.Request) -> web.Response:
    request.app[SEEN].append({k.lower(): v for k, v in request.headers.items()})
    if request.headers.get("x-custom") or request.path.endswith("/webhooks/stripe"):
        request.app[BODIES].append(await request.read())
    return web.json_response(
        {"path": request.path_qs}, headers={"Server": "echo/1", "X-Request-ID": "from-upstream"}
    )


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    upstream = web.Application()
    upstream[SEEN], upstream[BODIES] = [], []
    upstream.router.add_route("*", "/{tail:.*}", echo)
    runner = web.AppRunner(upstream)
    await runner.setup()
    upstream_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", upstream_port).start()

    port = free_port()
    settings = GatewaySettings(
        dev_mode=True,
        port=port,
        clients_url=f"http://127.0.0.1:{upstream_port}",
        payments_url=f"http://127.0.0.1:{upstream_port}",
        webhook_max_body_bytes=2000,
        notifications_url=f"http://127.0.0.1:{free_port()}",  # nothing listens there
        max_body_bytes=1000,
        log_format="console",
    )
    server = uvicorn.Server(
        uvicorn.Config(
            build_app(settings),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            proxy_headers=False,  # as the gateway process runs (devtools.processes)
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    yield Rig(f"http://127.0.0.1:{port}", upstream[SEEN], upstream[BODIES])
    server.should_exit = True
    await task
    await runner.cleanup()


async def test_client_sent_internal_headers_never_reach_a_service(rig: Rig) -> None:
    async with httpx.AsyncClient(base_url=rig.gateway) as client:
        response = await client.post(
            "/api/v1/clients/anything?x=1",
            content=b'{"hello": "world"}',
            headers={
                "Content-Type": "application/json",
                "X-Clientele-Account-Id": "someone-else",
                "X-Forwarded-For": "6.6.6.6",
                "X-Forwarded-Host": "evil.example",
                "X-Internal-Role": "admin",
                "X-Real-IP": "6.6.6.6",
                "Cookie": "clientele_session=not-a-session; other=1",
                "X-Request-ID": "client-chose-this",
                "X-Custom": "kept",
            },
        )
    assert response.status_code == 200
    assert response.json() == {"path": "/api/v1/clients/anything?x=1"}
    # (The cookie made the gateway try to exchange the session first; that failed.)
    [sent] = [headers for headers in rig.seen if headers.get("x-custom")]
    for name in (
        "x-clientele-account-id",
        "x-forwarded-host",
        "x-internal-role",
        "x-real-ip",
        "cookie",
        "authorization",
    ):
        assert name not in sent, name
    assert sent["x-forwarded-for"] == "127.0.0.1", "the real peer, not what the client claimed"
    assert sent["x-request-id"] == "client-chose-this"
    assert sent["x-custom"] == "kept"
    assert rig.bodies == [b'{"hello": "world"}']
    # The gateway's own ids and server headers, once each.
    assert response.headers.get_list("x-request-id") == ["client-chose-this"]
    assert "echo/1" not in response.headers.get_list("server")
    assert response.headers["x-frame-options"] == "DENY"


async def test_bodies_over_the_limit_are_refused_before_any_service_sees_them(rig: Rig) -> None:
    async with httpx.AsyncClient(base_url=rig.gateway) as client:
        response = await client.post("/api/v1/clients/anything", content=b"x" * 5000)
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert rig.seen == []


async def test_a_service_that_is_down_is_a_502_problem(rig: Rig) -> None:
    async with httpx.AsyncClient(base_url=rig.gateway) as client:
        response = await client.get("/api/v1/notifications/anything")
    assert response.status_code == 502
    assert response.json()["type"] == "/problems/bad-gateway"


async def test_a_malformed_authorization_header_is_refused_at_the_gateway(rig: Rig) -> None:
    async with httpx.AsyncClient(base_url=rig.gateway) as client:
        basic = await client.get("/api/v1/clients/x", headers={"Authorization": "Basic Zm9v"})
        garbage = await client.get("/api/v1/clients/x", headers={"Authorization": "Bearer x.y.z"})
    assert basic.status_code == garbage.status_code == 401
    assert rig.seen == []


async def test_stripe_webhooks_reach_payments_byte_for_byte_and_nothing_else(rig: Rig) -> None:
    body = b'{\n  "id": "evt_1",\n  "type": "payment_intent.succeeded"  }\n'
    async with httpx.AsyncClient(base_url=rig.gateway) as client:
        response = await client.post(
            "/webhooks/stripe",
            content=body,
            headers={
                "Content-Type": "application/json; charset=utf-8",
                "Stripe-Signature": "t=1,v1=abc",
                "Cookie": "clientele_session=someone; clientele_csrf=x",
                "Authorization": "Bearer not-checked-here",
                "X-Clientele-Account-Id": "someone-else",
                "Origin": "https://evil.example",
            },
        )
        assert response.status_code == 200  # no CSRF, no session, no token needed
        assert response.json() == {"path": "/api/v1/payments/webhooks/stripe"}
        [sent] = [h for h in rig.seen if h.get("stripe-signature")]
        assert rig.bodies == [body], "the signed bytes, untouched"
        assert sent["stripe-signature"] == "t=1,v1=abc"
        assert sent["content-type"] == "application/json; charset=utf-8"
        for name in ("cookie", "authorization", "x-clientele-account-id", "origin"):
            assert name not in sent, name

        too_big = await client.post("/webhooks/stripe", content=b"x" * 2001)
        assert too_big.status_code == 413
        assert len(rig.bodies) == 1
        wrong = await client.get("/webhooks/stripe")
        assert wrong.status_code == 405
        assert (await client.post("/webhooks/stripe/more", content=b"{}")).status_code == 404


async def test_proxy_hop_is_counted_by_upstream_service_and_passes_correlation_ids(
    rig: Rig,
) -> None:
    async with httpx.AsyncClient(base_url=rig.gateway) as client:
        chosen = await client.get(
            "/api/v1/clients/things/123?q=1",
            headers={"X-Correlation-ID": "purchase-7", "X-Custom": "chosen"},
        )
        unsafe = await client.get(
            "/api/v1/clients/things/456",
            headers={"X-Correlation-ID": "not a safe id", "X-Custom": "unsafe"},
        )
        unknown = await client.get("/api/v1/nosuch/things/789")
        scraped = await client.get("/metrics")
    assert chosen.status_code == unsafe.status_code == 200
    assert unknown.status_code == 404
    sent = {headers["x-custom"]: headers for headers in rig.seen if headers.get("x-custom")}
    assert sent["chosen"]["x-correlation-id"] == "purchase-7"
    assert sent["chosen"]["x-request-id"] == chosen.headers["x-request-id"]
    # An unsafe id never travels: the request id becomes the correlation id.
    assert sent["unsafe"]["x-correlation-id"] == unsafe.headers["x-request-id"]

    assert scraped.status_code == 200
    text = scraped.text
    assert 'clientele_http_requests_total{method="GET",route="proxy:clients",status="200"}' in text
    assert 'route="<unmatched>",status="404"' in text
    for raw in ("/api/v1/clients/things", "/api/v1/nosuch"):
        assert raw not in text, "no raw path becomes a label"
