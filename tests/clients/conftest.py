from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from clients import models
from clients.config import ClientsSettings
from clients.main import build_app
from kit.db import create_engine
from tests.support import infra


@dataclass
class ClientsApi:
    app: FastAPI
    http: httpx.AsyncClient
    settings: ClientsSettings
    engine: AsyncEngine

    async def outbox_events(self, name: str | None = None) -> list[dict[str, object]]:
        import json

        async with self.engine.connect() as conn:
            query = select(models.outbox.c.name, models.outbox.c.payload).order_by(
                models.outbox.c.created_at
            )
            rows = (await conn.execute(query)).all()
        return [{"name": n, **json.loads(p)} for n, p in rows if name is None or n == name]

    async def signup(self, email: str = "coach@example.com", **extra: str) -> dict[str, object]:
        body = {
            "name": "Casey Coach",
            "email": email,
            "password": "a long unusual passphrase",
            "business_name": "Casey Coaching",
            **extra,
        }
        response = await self.http.post("/api/v1/clients/signup", json=body)
        assert response.status_code == 201, response.text
        return response.json()


@dataclass
class Coach:
    business_id: str
    account_id: str
    email: str
    headers: dict[str, str]

    def url(self, path: str) -> str:
        return f"/api/v1/clients/businesses/{self.business_id}{path}"


async def make_coach(
    api: ClientsApi, email: str | None = None, business: str = "Casey Coaching"
) -> Coach:
    email = email or f"coach-{uuid.uuid4().hex[:8]}@example.com"
    result = await api.signup(email, business_name=business)
    return Coach(
        business_id=result["business"]["id"],
        account_id=result["account"]["id"],
        email=email,
        headers={"Authorization": f"Bearer {result['access_token']}"},
    )


async def invitation_token(api: ClientsApi, email: str) -> str:
    sent = [e for e in await api.outbox_events("clients.invitation_sent.v1") if e["email"] == email]
    assert sent, f"no invitation was sent to {email}"
    return str(sent[-1]["token"])


@pytest.fixture
async def clients_api(
    service_database: Callable[[str], Awaitable[str]],
    amqp_url: str,
    broker_namespace: infra.BrokerNamespace,
) -> AsyncIterator[ClientsApi]:
    url = await service_database("clients")
    settings = ClientsSettings(
        database_url=url,
        amqp_url=amqp_url,
        broker_namespace=broker_namespace.prefix,
        dev_mode=True,
        log_format="console",
    )
    app = build_app(settings)
    engine = create_engine(url)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://clients") as http:
            yield ClientsApi(app, http, settings, engine)
    await engine.dispose()
