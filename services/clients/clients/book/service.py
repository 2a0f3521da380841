"""The client book: who the clients of a business are and what happened to them.

Other domains (invitations, later purchases and bookings) add clients through
:meth:`ClientBook.add_clients`, so every way in records the same timeline
entry and publishes the same event.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from clients.book import schemas
from clients.book.repository import BookRepository, ClientRow
from clients.models import Account, Business, Client, ClientGroup
from kit.contracts.clients import ClientAddedV1, ClientArchivedV1, ClientRestoredV1
from kit.db import utcnow
from kit.errors import Conflict, NotFound
from kit.messaging import Outbox

ADDED_SUMMARY = {
    "invited": "Accepted the invitation and became a client",
    "added": "Added as a client by {actor}",
    "signed_up": "Signed up",
    "purchased": "Became a client with a purchase",
    "booked": "Became a client by booking an appointment",
    "appointment": "Became a client by requesting an appointment",
}


def timeline_row(
    business_id: uuid.UUID,
    client_id: uuid.UUID,
    kind: str,
    summary: str,
    occurred_at: datetime | None = None,
) -> dict[str, object]:
    return {
        "id": uuid.uuid4(),
        "business_id": business_id,
        "client_id": client_id,
        "kind": kind,
        "summary": summary[:300],
        "occurred_at": occurred_at or utcnow(),
    }


def client_out(row: ClientRow, groups: list[ClientGroup]) -> schemas.ClientOut:
    return schemas.ClientOut(
        id=row.client.id,
        account_id=row.account.id,
        name=row.account.display_name,
        email=row.account.email,
        source=row.client.source,  # type: ignore[arg-type]
        status=row.client.status,  # type: ignore[arg-type]
        created_at=row.client.created_at,
        archived_at=row.client.archived_at,
        groups=[schemas.GroupRef(id=g.id, name=g.name) for g in groups],
    )


@dataclass
class ClientBook:
    session: AsyncSession
    outbox: Outbox
    repo: BookRepository = field(init=False)

    def __post_init__(self) -> None:
        self.repo = BookRepository(self.session)

    async def business(self, business_id: uuid.UUID) -> Business:
        business = await self.repo.business(business_id)
        if business is None:
            raise NotFound("No such business.")
        return business

    # -- reading ------------------------------------------------------------------

    async def list(
        self,
        business_id: uuid.UUID,
        *,
        text: str | None,
        status: str | None,
        group_id: uuid.UUID | None,
        sort: str,
        limit: int,
        offset: int,
    ) -> schemas.ClientPage:
        rows, total = await self.repo.search(
            business_id,
            text=text,
            status=status,
            group_id=group_id,
            sort=sort,
            limit=limit,
            offset=offset,
        )
        groups = await self.repo.groups_of(business_id, [r.client.id for r in rows])
        return schemas.ClientPage(
            items=[client_out(r, groups.get(r.client.id, [])) for r in rows],
            total=total,
            limit=limit,
            offset=offset,
        )

    async def get(self, business_id: uuid.UUID, client_id: uuid.UUID) -> ClientRow:
        row = await self.repo.client(business_id, client_id)
        if row is None:
            raise NotFound("No such client.")
        return row

    async def profile(self, business_id: uuid.UUID, client_id: uuid.UUID) -> schemas.ClientProfile:
        row = await self.get(business_id, client_id)
        groups = await self.repo.groups_of(business_id, [client_id])
        timeline = await self.repo.timeline(business_id, client_id)
        return schemas.ClientProfile(
            **client_out(row, groups.get(client_id, [])).model_dump(),
            timeline=[
                schemas.TimelineEntryOut(kind=e.kind, summary=e.summary, occurred_at=e.occurred_at)
                for e in timeline
            ],
        )

    async def memberships(self, account_id: uuid.UUID) -> schemas.Memberships:
        return schemas.Memberships(
            items=[
                schemas.Membership(
                    business_id=b.id,
                    business_name=b.name,
                    business_slug=b.slug,
                    client_id=c.id,
                    since=c.created_at,
                )
                for c, b in await self.repo.memberships_of_account(account_id)
            ]
        )

    # -- changing -----------------------------------------------------------------

    async def add_clients(
        self,
        business: Business,
        accounts: list[Account],
        *,
        source: str,
        notify: bool,
        actor_name: str = "",
        extra_timeline: dict[uuid.UUID, list[tuple[str, str, datetime]]] | None = None,
    ) -> dict[uuid.UUID, uuid.UUID]:
        """Make accounts clients; those that already are stay as they are.

        Returns {account id: client id} for the clients created now. Safe under
        concurrent adds of the same account (the unique key decides).
        """
        now = utcnow()
        rows = {
            account.id: {
                "id": uuid.uuid4(),
                "business_id": business.id,
                "account_id": account.id,
                "source": source,
                "status": "active",
                "created_at": now,
            }
            for account in accounts
        }
        inserted = await self.repo.insert_new_clients(list(rows.values()))
        created = {aid: row["id"] for aid, row in rows.items() if row["id"] in inserted}
        by_id = {a.id: a for a in accounts}
        timeline = []
        events = []
        summary = ADDED_SUMMARY.get(source, "Became a client").format(actor=actor_name or "you")
        for account_id, client_id in created.items():
            account = by_id[account_id]
            for kind, text, when in (extra_timeline or {}).get(account_id, []):
                timeline.append(timeline_row(business.id, client_id, kind, text, when))  # type: ignore[arg-type]
            timeline.append(timeline_row(business.id, client_id, source, summary, now))  # type: ignore[arg-type]
            events.append(
                ClientAddedV1(
                    business_id=business.id,
                    client_id=client_id,  # type: ignore[arg-type]
                    account_id=account.id,
                    email=account.email,
                    display_name=account.display_name,
                    business_name=business.name,
                    source=source,
                    notify=notify,
                )
            )
        await self.repo.add_timeline(timeline)
        await self.outbox.enqueue_many(self.session, events)
        return created  # type: ignore[return-value]

    async def archive(
        self, business_id: uuid.UUID, client_id: uuid.UUID, actor_name: str
    ) -> schemas.ClientOut:
        return await self._set_status(business_id, client_id, "archived", actor_name)

    async def restore(
        self, business_id: uuid.UUID, client_id: uuid.UUID, actor_name: str
    ) -> schemas.ClientOut:
        return await self._set_status(business_id, client_id, "active", actor_name)

    async def _set_status(
        self, business_id: uuid.UUID, client_id: uuid.UUID, status: str, actor_name: str
    ) -> schemas.ClientOut:
        row = await self.get(business_id, client_id)
        client: Client = row.client
        if client.status == status:
            raise Conflict(f"The client is already {status}.")
        client.status = status
        client.archived_at = utcnow() if status == "archived" else None
        verb = "Archived" if status == "archived" else "Restored"
        await self.repo.add_timeline(
            [timeline_row(business_id, client_id, verb.lower(), f"{verb} by {actor_name}")]
        )
        event_type = ClientArchivedV1 if status == "archived" else ClientRestoredV1
        await self.outbox.enqueue(
            self.session,
            event_type(business_id=business_id, client_id=client_id, account_id=client.account_id),
        )
        groups = await self.repo.groups_of(business_id, [client_id])
        return client_out(row, groups.get(client_id, []))
