from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel

Source = Literal["invited", "signed_up", "purchased", "booked", "appointment", "added"]
ClientStatus = Literal["active", "archived"]
SORTS = ("name", "-name", "email", "-email", "created_at", "-created_at")
Sort = Literal["name", "-name", "email", "-email", "created_at", "-created_at"]


class GroupRef(BaseModel):
    id: uuid.UUID
    name: str


class ClientOut(BaseModel):
    id: uuid.UUID
    account_id: uuid.UUID
    name: str
    email: str
    source: Source
    status: ClientStatus
    created_at: datetime
    archived_at: datetime | None
    groups: list[GroupRef]


class ClientPage(BaseModel):
    items: list[ClientOut]
    total: int
    limit: int
    offset: int


class TimelineEntryOut(BaseModel):
    kind: str
    summary: str
    occurred_at: datetime


class ClientProfile(ClientOut):
    timeline: list[TimelineEntryOut]


class Membership(BaseModel):
    """A business the caller is a client of (for the client home)."""

    business_id: uuid.UUID
    business_name: str
    business_slug: str
    client_id: uuid.UUID
    since: datetime


class Memberships(BaseModel):
    items: list[Membership]
