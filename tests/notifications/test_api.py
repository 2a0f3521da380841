"""The email log API: a business's staff see that business's emails, nobody else does."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from notifications.emails.service import email_id
from notifications.main import build_app
from notifications.models import Email
from tests.notifications import events
from tests.notifications.conftest import Issuer, Notifications, SmtpServer, free_port
from tests.support import tokens

API = "/api/v1/notifications"
ITEM_FIELDS = {
    "id",
    "template",
    "recipient",
    "subject",
    "status",
    "attempts",
    "last_error",
    "created_at",
    "sent_at",
}


@dataclass
class Api:
    http: httpx.AsyncClient
    harness: Notifications
    issuer: Issuer
    business: uuid.UUID
    other_business: uuid.UUID
    # Email ids of ``business``, newest first.
    newest_first: list[uuid.UUID]

    async def list(
        self, business: uuid.UUID, token_for: uuid.UUID | None = None, **params: Any
    ) -> httpx.Response:
        headers = self.issuer.headers({token_for or business: "owner"})
        return await self.http.get(
            f"{API}/businesses/{business}/emails", params=params, headers=headers
        )


async def seed(harness: Notifications, business: uuid.UUID, count: int) -> list[uuid.UUID]:
    ids = []
    for n in range(count):
        event = events.account_registered(business_id=business, display_name=f"Coach {n}")
        context = {
            "name": f"Coach {n}",
            "business_name": None,
            "verify_url": None,
            "verify_expires_in": None,
            "account_url": "https://app.example.test/account",
        }
        await harness.queue(event, "welcome", f"coach{n}@example.com", **context)
        ids.append(email_id(event.id, "welcome", f"coach{n}@example.com"))
    return ids


@pytest.fixture
async def api(
    make_notifications: Callable[..., Awaitable[Notifications]],
    jwks_url: tuple[str, Issuer],
) -> AsyncIterator[Api]:
    url, issuer = jwks_url
    harness = await make_notifications(SmtpServer(free_port()), jwks_url=url)
    business, other_business = uuid.uuid4(), uuid.uuid4()
    ids = await seed(harness, business, 7)
    await seed(harness, other_business, 2)
    # An account email belongs to no business: no business's log shows it.
    await harness.queue(
        events.magic_link_requested(business_id=None),
        "magic_link",
        "casey@example.com",
        name="Casey",
        login_url="https://app.example.test/login/magic/confirm?token=secret",
        expires_in="15 minutes",
    )
    async with harness.sessionmaker() as session, session.begin():
        await session.execute(update(Email).where(Email.id.in_(ids[:4])).values(status="sent"))
        await session.execute(
            update(Email).where(Email.id == ids[4]).values(status="failed", last_error="550 nope")
        )
    app = build_app(harness.settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://notifications") as http:
            yield Api(http, harness, issuer, business, other_business, list(reversed(ids)))


async def test_staff_see_their_business_emails_newest_first(api: Api) -> None:
    response = await api.list(api.business)
    assert response.status_code == 200, response.text
    page = response.json()
    assert (page["total"], page["limit"], page["offset"]) == (7, 50, 0)
    assert [uuid.UUID(item["id"]) for item in page["items"]] == api.newest_first
    assert all(set(item) == ITEM_FIELDS for item in page["items"]), "never the bodies"
    newest = page["items"][0]
    assert newest["template"] == "welcome"
    assert newest["recipient"] == "coach6@example.com"
    assert newest["subject"] == "Welcome to Clientele, Coach 6"
    assert (newest["status"], newest["attempts"], newest["sent_at"]) == ("queued", 0, None)
    assert "secret" not in response.text

    other = await api.list(api.other_business)
    assert other.json()["total"] == 2
    coach = await api.http.get(
        f"{API}/businesses/{api.business}/emails",
        headers=api.issuer.headers({api.business: "coach"}),
    )
    assert coach.status_code == 200 and coach.json()["total"] == 7


async def test_pages_and_status_filter(api: Api) -> None:
    seen = []
    for offset in (0, 3, 6):
        page = (await api.list(api.business, limit=3, offset=offset)).json()
        assert (page["total"], page["limit"], page["offset"]) == (7, 3, offset)
        seen += [uuid.UUID(item["id"]) for item in page["items"]]
    assert seen == api.newest_first
    assert (await api.list(api.business, offset=50)).json()["items"] == []

    failed = (await api.list(api.business, status="failed")).json()
    assert failed["total"] == 1
    assert [(i["status"], i["last_error"]) for i in failed["items"]] == [("failed", "550 nope")]
    sent = (await api.list(api.business, status="sent", limit=2)).json()
    assert sent["total"] == 4 and len(sent["items"]) == 2
    assert {i["status"] for i in sent["items"]} == {"sent"}


async def test_another_business_is_not_found(api: Api) -> None:
    response = await api.list(api.business, token_for=api.other_business)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    unknown = await api.list(uuid.uuid4(), token_for=api.business)
    assert unknown.status_code == 404


async def test_no_or_bad_token_is_401(api: Api) -> None:
    path = f"{API}/businesses/{api.business}/emails"
    response = await api.http.get(path)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    for kind, token in tokens.broken_variants(api.issuer.key, api.issuer.kid, "x").items():
        refused = await api.http.get(path, headers={"Authorization": f"Bearer {token}"})
        assert refused.status_code == 401, kind


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
        ({"offset": -1}, "offset"),
        ({"status": "bounced"}, "status"),
    ],
)
async def test_bad_query_is_422_naming_the_field(
    api: Api, params: dict[str, Any], field: str
) -> None:
    response = await api.list(api.business, **params)
    assert response.status_code == 422
    assert field in [e["field"] for e in response.json()["errors"]]


async def test_health(api: Api) -> None:
    assert (await api.http.get("/healthz")).status_code == 200
    ready = await api.http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": True}
