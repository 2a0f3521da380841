from __future__ import annotations

import uuid

from pydantic import BaseModel


class GroupOut(BaseModel):
    id: uuid.UUID
    name: str


class GroupList(BaseModel):
    items: list[GroupOut]
