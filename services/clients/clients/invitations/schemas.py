from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from kit.validation import Name

Outcome = Literal["added", "invited", "already_client", "already_invited", "invalid"]
InvitationStatus = Literal["pending", "accepted", "expired", "revoked"]


class InviteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Pasted text (commas, spaces, semicolons, new lines) or a list of addresses.
    addresses: (
        Annotated[str, StringConstraints(max_length=1_000_000)]
        | list[Annotated[str, StringConstraints(max_length=400)]]
    )


class InviteRow(BaseModel):
    input: str
    email: str | None
    outcome: Outcome
    reason: str | None = None
    client_id: uuid.UUID | None = None
    invitation_id: uuid.UUID | None = None


class InviteCounts(BaseModel):
    added: int = 0
    invited: int = 0
    already_client: int = 0
    already_invited: int = 0
    invalid: int = 0


class InviteResult(BaseModel):
    results: list[InviteRow]
    counts: InviteCounts
    remaining_today: int


class InvitationOut(BaseModel):
    id: uuid.UUID
    email: str
    status: InvitationStatus
    created_at: datetime
    expires_at: datetime
    last_sent_at: datetime
    send_count: int
    accepted_at: datetime | None
    revoked_at: datetime | None


class InvitationPage(BaseModel):
    items: list[InvitationOut]
    total: int
    limit: int
    offset: int


class Quota(BaseModel):
    daily_cap: int
    sent_today: int
    remaining_today: int


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: Annotated[str, StringConstraints(min_length=16, max_length=200)]


class AcceptIn(TokenIn):
    # For a new account: name and password; for an existing one: its password.
    # A logged-in caller (bearer) needs neither.
    name: Name | None = None
    password: Annotated[str, StringConstraints(max_length=1024)] | None = None


class InvitationLookup(BaseModel):
    business_name: str
    email: str
    status: Literal["valid", "expired", "revoked", "accepted"]
    account_exists: bool
    expires_at: datetime


class Pagination(BaseModel):
    limit: int = Field(50, ge=1, le=200)
    offset: int = Field(0, ge=0)
