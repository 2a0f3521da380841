"""Several api replicas behind one gateway setting: taken in turn, a dead one skipped.

Two echo servers stand where two replicas of a service would, each answering
with its own name; a third address has nobody listening (a replica that died).
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
import uvicorn
from aiohttp import web

from gateway import upstream
from gateway.config import GatewaySettings
from gateway.main import build_app
from gateway.upstream import ReplicaSet
from tests.gateway.test_proxy import free_port

NAME = web.AppKey("name", str)


async def whoami(request: web.Request) -> web.Response:
    return web.json_response({"replica": request.app[NAME], "path": request.path_qs})


@dataclass
class Rig:
    gateway: str
    dead: str


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    runners, urls = [], []
    for name in ("a", "b"):
        app = web.Application()
        app[NAME] = name
        app.router.add_route("*", "/{tail:.*}", whoami)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        urls.append(f"http://127.0.0.1:{port}")
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    port = free_port()
    settings = GatewaySettings(
        dev_mode=True,
        port=port,
        clients_url=f" {urls[0]}/, {urls[1]} ",  # spaces and a trailing slash are fine
        payments_url=f"{dead},{urls[0]},{urls[1]}",
        notifications_url=f"{dead},{dead.replace('127.0.0.1', 'localhost')}",
        log_format="console",
    )
    assert settings.upstreams()["clients"] == ",".join(urls)
    server = uvicorn.Server(
        uvicorn.Config(build_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    yield Rig(f"http://127.0.0.1:{port}", dead)
    server.should_exit = True
    await task
    for runner in runners:
        await runner.cleanup()


async def test_requests_take_the_replicas_of_a_service_in_turn(rig: Rig) -> None:
    async with httpx.AsyncClient(base_url=rig.gateway) as client:
        replies = [(await client.get(f"/api/v1/clients/things/{n}?q=1")) for n in range(10)]
    assert {r.status_code for r in replies} == {200}
    assert [r.json()["path"] for r in replies][:2] == [
        "/api/v1/clients/things/0?q=1",
        "/api/v1/clients/things/1?q=1",
    ]
    served = [r.json()["replica"] for r in replies]
    assert Counter(served) == {"a": 5, "b": 5}
    assert all(x != y for x, y in itertools.pairwise(served)), served


async def test_a_replica_that_refuses_connections_is_skipped(rig: Rig) -> None:
    async with httpx.AsyncClient(base_url=rig.gateway) as client:
        proxied = [(await client.post("/api/v1/payments/orders", json={})) for _ in range(6)]
        webhooks = [
            (
                await client.post(
                    "/webhooks/stripe", content=b"{}", headers={"Stripe-Signature": "x"}
                )
            )
            for _ in range(6)
        ]
    # Not one request lost: a refused connection sent nothing, so the next replica gets it.
    assert [r.status_code for r in proxied + webhooks] == [200] * 12
    assert set(Counter(r.json()["replica"] for r in proxied + webhooks)) == {"a", "b"}
    assert webhooks[0].json()["path"] == "/api/v1/payments/webhooks/stripe"


async def test_a_service_whose_every_replica_is_down_is_a_502(rig: Rig) -> None:
    async with httpx.AsyncClient(base_url=rig.gateway) as client:
        response = await client.get("/api/v1/notifications/anything")
    assert response.status_code == 502
    assert response.json()["type"] == "/problems/bad-gateway"


def test_a_refused_replica_goes_last_until_its_pause_is_over(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    monkeypatch.setattr(upstream.time, "monotonic", lambda: now[0])
    replicas = ReplicaSet("clients", ("a", "b", "c"))
    assert [replicas.order()[0] for _ in range(4)] == ["a", "b", "c", "a"]
    replicas.refused("c")
    assert [replicas.order() for _ in range(3)] == [
        ["b", "a", "c"],  # b's turn
        ["a", "b", "c"],  # c's turn: c goes last
        ["a", "b", "c"],
    ]
    now[0] += upstream.REFUSED_SECONDS + 0.1
    assert replicas.order() == ["b", "c", "a"]
    assert ReplicaSet("clients", ("only",)).order() == ["only"]


def test_an_empty_upstream_setting_is_refused() -> None:
    with pytest.raises(ValueError, match="catalog_url"):
        GatewaySettings(dev_mode=True, catalog_url=" , ")
