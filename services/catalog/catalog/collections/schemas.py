from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from kit.validation import Name

CollectionName = Annotated[Name, StringConstraints(max_length=120)]


class CollectionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: CollectionName
    description: str = Field("", max_length=5000)
    offering_ids: list[uuid.UUID] = Field(default_factory=list, max_length=500)
    in_app: bool = False
    established_only: bool = False


class CollectionPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: CollectionName | None = None
    description: str | None = Field(None, max_length=5000)
    offering_ids: list[uuid.UUID] | None = Field(None, max_length=500)
    in_app: bool | None = None
    established_only: bool | None = None

    def changes(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.model_fields_set}


class CollectionOut(BaseModel):
    id: uuid.UUID
    business_id: uuid.UUID
    name: str
    description: str
    offering_ids: list[uuid.UUID]
    in_app: bool
    established_only: bool
    created_at: datetime
    updated_at: datetime


class CollectionList(BaseModel):
    items: list[CollectionOut]
