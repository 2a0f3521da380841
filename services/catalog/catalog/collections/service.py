"""Collections: ordered sets of a business's offerings, shown as a page or in the app menu.

Every create and change publishes ``catalog.collection_updated.v1`` (the two
flags included); a deletion publishes ``catalog.collection_deleted.v1``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from catalog.collections import schemas
from catalog.collections.repository import CollectionRepository
from catalog.models import Collection
from catalog.offerings.repository import OfferingRepository
from kit.contracts.catalog import CollectionDeletedV1, CollectionUpdatedV1
from kit.db import utcnow
from kit.errors import InvalidInput, NotFound
from kit.messaging import Outbox

FIELDS = ("name", "description", "offering_ids", "in_app", "established_only")


def collection_out(collection: Collection) -> schemas.CollectionOut:
    return schemas.CollectionOut(
        id=collection.id,
        business_id=collection.business_id,
        name=collection.name,
        description=collection.description,
        offering_ids=[uuid.UUID(str(o)) for o in collection.offering_ids],
        in_app=collection.in_app,
        established_only=collection.established_only,
        created_at=collection.created_at,
        updated_at=collection.updated_at,
    )


@dataclass
class CollectionService:
    session: AsyncSession
    outbox: Outbox
    repo: CollectionRepository = field(init=False)
    offerings: OfferingRepository = field(init=False)

    def __post_init__(self) -> None:
        self.repo = CollectionRepository(self.session)
        self.offerings = OfferingRepository(self.session)

    async def _get(
        self, business_id: uuid.UUID, collection_id: uuid.UUID, *, lock: bool = False
    ) -> Collection:
        found = await self.repo.collection(business_id, collection_id, lock=lock)
        if found is None:
            raise NotFound("No such collection.")
        return found

    async def _offering_ids(self, business_id: uuid.UUID, ids: list[uuid.UUID]) -> list[str]:
        wanted = list(dict.fromkeys(ids))  # in order, each once
        known = await self.offerings.existing_ids(business_id, wanted)
        unknown = [str(o) for o in wanted if o not in known]
        if unknown:
            raise InvalidInput.for_field(
                "offering_ids", f"not offerings of this business: {', '.join(unknown[:10])}"
            )
        return [str(o) for o in wanted]

    async def list(self, business_id: uuid.UUID) -> schemas.CollectionList:
        rows = await self.repo.collections(business_id)
        return schemas.CollectionList(items=[collection_out(c) for c in rows])

    async def get(self, business_id: uuid.UUID, collection_id: uuid.UUID) -> schemas.CollectionOut:
        return collection_out(await self._get(business_id, collection_id))

    async def create(
        self, business_id: uuid.UUID, body: schemas.CollectionIn
    ) -> schemas.CollectionOut:
        now = utcnow()
        collection = Collection(
            id=uuid.uuid4(),
            business_id=business_id,
            name=body.name,
            description=body.description,
            offering_ids=await self._offering_ids(business_id, body.offering_ids),
            in_app=body.in_app,
            established_only=body.established_only,
            created_at=now,
            updated_at=now,
        )
        await self.repo.add(collection)
        await self._announce(collection)
        return collection_out(collection)

    async def edit(
        self, business_id: uuid.UUID, collection_id: uuid.UUID, patch: schemas.CollectionPatch
    ) -> schemas.CollectionOut:
        collection = await self._get(business_id, collection_id, lock=True)
        changes: dict[str, Any] = patch.changes()
        for name in ("name", "description", "in_app", "established_only"):
            if name in changes and changes[name] is None:
                raise InvalidInput.for_field(name, "must not be null")
        if "offering_ids" in changes:
            changes["offering_ids"] = await self._offering_ids(
                business_id, changes["offering_ids"] or []
            )
        if any(getattr(collection, name) != value for name, value in changes.items()):
            for name, value in changes.items():
                setattr(collection, name, value)
            collection.updated_at = utcnow()
            await self.repo.flush()
            await self._announce(collection)
        return collection_out(collection)

    async def delete(self, business_id: uuid.UUID, collection_id: uuid.UUID) -> None:
        collection = await self._get(business_id, collection_id, lock=True)
        await self.repo.delete(collection)
        await self.outbox.enqueue(
            self.session,
            CollectionDeletedV1(business_id=business_id, collection_id=collection_id),
        )

    async def _announce(self, collection: Collection) -> None:
        await self.outbox.enqueue(
            self.session,
            CollectionUpdatedV1(
                business_id=collection.business_id,
                collection_id=collection.id,
                collection_name=collection.name,
                in_app=collection.in_app,
                established_only=collection.established_only,
                offering_ids=[uuid.UUID(str(o)) for o in collection.offering_ids],
            ),
        )
