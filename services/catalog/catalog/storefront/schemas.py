from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel


class BusinessOut(BaseModel):
    id: uuid.UUID
    name: str
    slug: str


class OfferingCard(BaseModel):
    id: uuid.UUID
    version_id: uuid.UUID
    name: str
    description: str
    kind: str
    billing: dict[str, Any]
    price_minor: int
    currency: str
    price_label: str
    spots_left: int | None
    details: dict[str, Any]


class PackagesPage(BaseModel):
    business: BusinessOut
    offerings: list[OfferingCard]


class OfferingPage(BaseModel):
    business: BusinessOut
    offering: OfferingCard
    can_buy: bool


class CollectionSummary(BaseModel):
    id: uuid.UUID
    name: str
    description: str
    in_app: bool
    established_only: bool


class CollectionPage(BaseModel):
    business: BusinessOut
    collection: CollectionSummary
    offerings: list[OfferingCard]


class MenuCollection(BaseModel):
    id: uuid.UUID
    name: str
    path: str


class MenuBusiness(BaseModel):
    business: BusinessOut
    collections: list[MenuCollection]


class Menu(BaseModel):
    businesses: list[MenuBusiness]
