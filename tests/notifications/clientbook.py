"""Client-book helpers: applying events without the broker, the audience, the campaign API."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import insert

from kit.contracts.base import Event
from kit.contracts.clients import (
    BusinessCreatedV1,
    ClientAddedV1,
    ClientArchivedV1,
    ClientRestoredV1,
    GroupCreatedV1,
    GroupDeletedV1,
    GroupMemberAddedV1,
    GroupMemberRemovedV1,
    GroupRenamedV1,
)
from kit.db import utcnow
from notifications.audience.service import AudienceService
from notifications.campaigns.repository import CampaignRepository
from notifications.emails.rendering import EmailRenderer
from notifications.emails.service import EmailService
from notifications.models import AudienceClient
from tests.notifications.conftest import Issuer, Notifications

API = "/api/v1/notifications"
_renderer = EmailRenderer()


async def apply(harness: Notifications, *events: Event) -> None:
    """Each event in a transaction of its own, as separate deliveries would be (no broker)."""
    for event in events:
        async with harness.sessionmaker() as session, session.begin():
            audience = AudienceService(session)
            match event:
                case BusinessCreatedV1():
                    await EmailService(session, harness.settings, _renderer).remember_business(
                        event
                    )
                case ClientAddedV1():
                    await audience.client_added(event)
                case ClientArchivedV1():
                    await audience.client_archived(event)
                case ClientRestoredV1():
                    await audience.client_restored(event)
                case GroupCreatedV1() | GroupRenamedV1():
                    await audience.group_named(event)
                case GroupDeletedV1():
                    await audience.group_deleted(event)
                case GroupMemberAddedV1():
                    await audience.member_added(event)
                case GroupMemberRemovedV1():
                    await audience.member_removed(event)
                case _:
                    raise AssertionError(f"no direct handler for {event.name}")


async def audience_of(
    harness: Notifications, business_id: uuid.UUID, group_id: uuid.UUID | None = None
) -> set[str]:
    """The addresses a campaign to this audience would go to (unsubscribed ones included)."""
    async with harness.sessionmaker() as session:
        members = await CampaignRepository(session).audience(business_id, group_id)
    return {member.email for member in members}


async def seed_clients(
    harness: Notifications, business_id: uuid.UUID, count: int, prefix: str = "client"
) -> list[str]:
    """``count`` active clients straight into the read model (fast, for big audiences)."""
    now = utcnow()
    rows = [
        {
            "business_id": business_id,
            "client_id": uuid.uuid4(),
            "account_id": uuid.uuid4(),
            "email": f"{prefix}{n:05d}@example.com",
            "display_name": f"Client {n:05d}",
            "profile_at": now,
            "status": "active",
            "status_at": now,
        }
        for n in range(count)
    ]
    async with harness.sessionmaker() as session, session.begin():
        await session.execute(insert(AudienceClient), rows)
    return [row["email"] for row in rows]


@dataclass
class CoachApi:
    """The notifications api, called as the staff of ``business`` (or of another one)."""

    http: httpx.AsyncClient
    harness: Notifications
    issuer: Issuer
    business: uuid.UUID  # "Casey Coaching"
    other_business: uuid.UUID  # "Other Studio"

    def headers(self, as_staff_of: uuid.UUID | None = None) -> dict[str, str]:
        return self.issuer.headers({as_staff_of or self.business: "owner"})

    async def call(
        self,
        method: str,
        path: str = "",
        *,
        business: uuid.UUID | None = None,
        as_staff_of: uuid.UUID | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        business = business or self.business
        url = f"{API}/businesses/{business}/campaigns{path}"
        headers = self.headers(as_staff_of or business)
        return await self.http.request(method, url, headers=headers, **kwargs)

    async def create(self, business: uuid.UUID | None = None, **body: Any) -> dict[str, Any]:
        body.setdefault("subject", "Spring offer")
        body.setdefault("body_markdown", "Our **spring** classes are open.")
        body.setdefault("audience", {"kind": "all"})
        response = await self.call("POST", business=business, json=body)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    async def send(self, campaign_id: str, business: uuid.UUID | None = None) -> dict[str, Any]:
        response = await self.call("POST", f"/{campaign_id}/send", business=business)
        assert response.status_code == 200, response.text
        sent: dict[str, Any] = response.json()
        return sent

    async def get(self, campaign_id: str, business: uuid.UUID | None = None) -> dict[str, Any]:
        response = await self.call("GET", f"/{campaign_id}", business=business)
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found

    async def unsubscribe(self, action: str, token: str) -> httpx.Response:
        """``action``: lookup | unsubscribe | undo."""
        path = {"lookup": "/unsubscribe/lookup", "unsubscribe": "/unsubscribe"}.get(
            action, f"/unsubscribe/{action}"
        )
        return await self.http.post(f"{API}{path}", json={"token": token})
