"""A request whose PostgreSQL connection dies under it (pg_terminate_backend, a server
restart): reads are run again on a fresh connection, writes answer 503, never 500."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from kit.db import DISCONNECT_RETRY_DELAYS, create_engine, create_sessionmaker
from kit.http import create_app


@pytest.fixture
async def engine(fresh_database: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(fresh_database, pool_size=2)
    yield engine
    await engine.dispose()


@pytest.fixture
async def api(engine: AsyncEngine) -> AsyncIterator[tuple[httpx.AsyncClient, Counter[str]]]:
    sessionmaker = create_sessionmaker(engine)
    calls: Counter[str] = Counter()
    app = create_app(title="disconnects")

    async def answer(kind: str, kill_first: int) -> dict[str, int]:
        calls[kind] += 1
        async with sessionmaker() as session:
            if calls[kind] <= kill_first:  # the server ends this very connection
                await session.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
            value = (await session.execute(text("SELECT 41 + 1"))).scalar_one()
        return {"value": value, "calls": calls[kind]}

    @app.get("/read-once-killed")
    async def read_once_killed() -> dict[str, int]:
        return await answer("read-once", kill_first=1)

    @app.get("/read-always-killed")
    async def read_always_killed() -> dict[str, int]:
        return await answer("read-always", kill_first=10**6)

    @app.post("/write-killed")
    async def write_killed() -> dict[str, int]:
        return await answer("write", kill_first=1)

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client, calls


async def test_a_read_whose_connection_is_terminated_is_answered_from_a_fresh_one(
    api: tuple[httpx.AsyncClient, Counter[str]],
) -> None:
    client, _calls = api
    response = await client.get("/read-once-killed")
    assert response.status_code == 200, response.text
    assert response.json() == {"value": 42, "calls": 2}


async def test_a_read_that_keeps_losing_its_connection_gives_up_with_503(
    api: tuple[httpx.AsyncClient, Counter[str]],
) -> None:
    client, calls = api
    response = await client.get("/read-always-killed")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "1"
    assert calls["read-always"] == len(DISCONNECT_RETRY_DELAYS) + 1


async def test_a_write_is_not_run_again_and_answers_503(
    api: tuple[httpx.AsyncClient, Counter[str]],
) -> None:
    client, calls = api
    response = await client.post("/write-killed")
    assert response.status_code == 503
    assert response.json()["type"] == "/problems/unavailable"
    assert calls["write"] == 1
