from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from kit.validation import Name

GroupName = Annotated[Name, StringConstraints(max_length=120)]


class GroupIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: GroupName


class MembersIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    client_ids: list[uuid.UUID] = Field(min_length=1, max_length=5000)


class GroupOut(BaseModel):
    id: uuid.UUID
    name: str
    member_count: int
    created_at: datetime


class GroupList(BaseModel):
    items: list[GroupOut]


class MemberOut(BaseModel):
    id: uuid.UUID
    name: str
    email: str
    status: str


class GroupDetail(GroupOut):
    members: list[MemberOut]


class MembershipChange(BaseModel):
    group: GroupOut
    changed: int
