"""The storefront reads through the other domains' repositories; it owns no table.

This module gathers them, so the service has one place to ask.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from catalog.collections.repository import CollectionRepository
from catalog.eligibility.repository import ReadModelRepository
from catalog.offerings.repository import OfferingRepository


@dataclass
class StorefrontRepository:
    session: AsyncSession
    offerings: OfferingRepository = field(init=False)
    collections: CollectionRepository = field(init=False)
    read_model: ReadModelRepository = field(init=False)

    def __post_init__(self) -> None:
        self.offerings = OfferingRepository(self.session)
        self.collections = CollectionRepository(self.session)
        self.read_model = ReadModelRepository(self.session)
