"""Every query of the client book (clients and their timeline)."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from clients.models import Account, Business, Client, ClientGroup, GroupMembership, TimelineEntry
from kit.db import insert_ignoring_conflicts

# IN lists are chunked: databases cap the number of bound parameters.
CHUNK = 1000


def chunks(values: Sequence[object], size: int = CHUNK) -> Iterable[Sequence[object]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


@dataclass(frozen=True)
class ClientRow:
    client: Client
    account: Account


_SORT_COLUMNS = {
    "name": func.lower(Account.display_name),
    "email": Account.email,
    "created_at": Client.created_at,
}


class BookRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def business(self, business_id: uuid.UUID) -> Business | None:
        return await self.session.get(Business, business_id)

    async def client(self, business_id: uuid.UUID, client_id: uuid.UUID) -> ClientRow | None:
        result = await self.session.execute(
            select(Client, Account)
            .join(Account, Account.id == Client.account_id)
            .where(Client.business_id == business_id, Client.id == client_id)
        )
        row = result.first()
        return ClientRow(row[0], row[1]) if row else None

    async def clients_of_accounts(
        self, business_id: uuid.UUID, account_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, Client]:
        found: dict[uuid.UUID, Client] = {}
        for part in chunks(account_ids):
            result = await self.session.execute(
                select(Client).where(Client.business_id == business_id, Client.account_id.in_(part))
            )
            found.update({c.account_id: c for c in result.scalars()})
        return found

    async def clients_by_ids(
        self, business_id: uuid.UUID, client_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, ClientRow]:
        found: dict[uuid.UUID, ClientRow] = {}
        for part in chunks(client_ids):
            result = await self.session.execute(
                select(Client, Account)
                .join(Account, Account.id == Client.account_id)
                .where(Client.business_id == business_id, Client.id.in_(part))
            )
            found.update({c.id: ClientRow(c, a) for c, a in result.all()})
        return found

    async def insert_new_clients(self, rows: list[dict[str, object]]) -> set[uuid.UUID]:
        """Insert clients, skipping accounts that already are (also under a concurrent add).

        Returns the ids of the rows actually inserted."""
        if not rows:
            return set()
        statement = insert_ignoring_conflicts(
            self.session.bind.dialect.name, Client.__table__, ["business_id", "account_id"]
        ).returning(Client.__table__.c.id)
        result = await self.session.execute(statement, rows)
        return set(result.scalars())

    async def search(
        self,
        business_id: uuid.UUID,
        *,
        text: str | None,
        status: str | None,
        group_id: uuid.UUID | None,
        sort: str,
        limit: int,
        offset: int,
    ) -> tuple[list[ClientRow], int]:
        conditions = [Client.business_id == business_id]
        if status is not None:
            conditions.append(Client.status == status)
        if text:
            needle = f"%{_like_escape(text.lower())}%"
            conditions.append(
                func.lower(Account.display_name).like(needle, escape="\\")
                | Account.email.like(needle, escape="\\")
            )
        if group_id is not None:
            conditions.append(
                Client.id.in_(
                    select(GroupMembership.client_id).where(
                        GroupMembership.business_id == business_id,
                        GroupMembership.group_id == group_id,
                    )
                )
            )
        base = (
            select(Client, Account)
            .join(Account, Account.id == Client.account_id)
            .where(*conditions)
        )
        total = (
            await self.session.execute(select(func.count()).select_from(base.subquery()))
        ).scalar_one()
        column = _SORT_COLUMNS[sort.lstrip("-")]
        order = column.desc() if sort.startswith("-") else column.asc()
        result = await self.session.execute(
            base.order_by(order, Client.id).limit(limit).offset(offset)
        )
        return [ClientRow(c, a) for c, a in result.all()], int(total)

    async def groups_of(
        self, business_id: uuid.UUID, client_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, list[ClientGroup]]:
        found: dict[uuid.UUID, list[ClientGroup]] = defaultdict(list)
        for part in chunks(client_ids):
            result = await self.session.execute(
                select(GroupMembership.client_id, ClientGroup)
                .join(ClientGroup, ClientGroup.id == GroupMembership.group_id)
                .where(
                    GroupMembership.business_id == business_id, GroupMembership.client_id.in_(part)
                )
                .order_by(func.lower(ClientGroup.name))
            )
            for client_id, group in result.all():
                found[client_id].append(group)
        return found

    async def add_timeline(self, entries: list[dict[str, object]]) -> None:
        if entries:
            await self.session.execute(insert(TimelineEntry), entries)

    async def timeline(
        self, business_id: uuid.UUID, client_id: uuid.UUID, limit: int = 200
    ) -> list[TimelineEntry]:
        result = await self.session.execute(
            select(TimelineEntry)
            .where(TimelineEntry.business_id == business_id, TimelineEntry.client_id == client_id)
            .order_by(TimelineEntry.occurred_at.desc(), TimelineEntry.id)
            .limit(limit)
        )
        return list(result.scalars())

    async def memberships_of_account(self, account_id: uuid.UUID) -> list[tuple[Client, Business]]:
        result = await self.session.execute(
            select(Client, Business)
            .join(Business, Business.id == Client.business_id)
            .where(Client.account_id == account_id, Client.status == "active")
            .order_by(Client.created_at)
        )
        return [(c, b) for c, b in result.all()]


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
