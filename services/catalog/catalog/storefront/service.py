"""What visitors and clients see. Every answer goes through the eligibility rule.

The packages list is the same for every viewer (published and public only),
so it can be cached; an offering or a collection depends on who is looking.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from catalog.eligibility.service import LOGIN_REQUIRED, NOT_A_CLIENT, Eligibility, refusal
from catalog.models import PUBLISHED, KnownBusiness, Offering, OfferingVersion
from catalog.offerings.service import spots_left
from catalog.refusals import refused
from catalog.storefront import schemas
from catalog.storefront.repository import StorefrontRepository
from kit.auth import Principal
from kit.errors import NotFound
from kit.money import price_label


def business_out(business: KnownBusiness) -> schemas.BusinessOut:
    return schemas.BusinessOut(id=business.business_id, name=business.name, slug=business.slug)


def card(offering: Offering, version: OfferingVersion, locale: str) -> schemas.OfferingCard:
    return schemas.OfferingCard(
        id=offering.id,
        version_id=version.id,
        name=version.name,
        description=version.description,
        kind=version.kind,
        billing=dict(version.billing),
        price_minor=version.price_minor,
        currency=version.currency,
        price_label=price_label(version.price_minor, version.currency, version.billing, locale),
        spots_left=spots_left(offering, version),
        details=dict(version.details),
    )


def collection_path(slug: str, collection_id: uuid.UUID) -> str:
    return f"/b/{slug}/collections/{collection_id}"


@dataclass
class Storefront:
    session: AsyncSession
    locale: str = "en_US"
    repo: StorefrontRepository = field(init=False)
    eligibility: Eligibility = field(init=False)

    def __post_init__(self) -> None:
        self.repo = StorefrontRepository(self.session)
        self.eligibility = Eligibility(self.session)

    async def _business(self, slug: str) -> KnownBusiness:
        business = await self.repo.read_model.business_by_slug(slug)
        if business is None:
            raise NotFound("No such business.", reason="not_found")
        return business

    async def packages(self, slug: str) -> schemas.PackagesPage:
        business = await self._business(slug)
        rows = await self.repo.offerings.offerings(
            business.business_id, statuses=[PUBLISHED], visibilities=["public"]
        )
        return schemas.PackagesPage(
            business=business_out(business),
            offerings=[card(o, v, self.locale) for o, v in rows],
        )

    async def offering(
        self, slug: str, offering_id: uuid.UUID, viewer: Principal | None
    ) -> schemas.OfferingPage:
        business = await self._business(slug)
        found = await self.repo.offerings.offering(business.business_id, offering_id)
        if found is None:
            raise NotFound("No such offering.", reason="not_found")
        offering, version = found
        standing = await self.eligibility.standing(business.business_id, viewer)
        if refusal(offering.status, version.visibility, version.group_ids, standing):
            # Whatever the reason, an offering the viewer may not see does not exist for them.
            raise NotFound("No such offering.", reason="not_found")
        left = spots_left(offering, version)
        return schemas.OfferingPage(
            business=business_out(business),
            offering=card(offering, version, self.locale),
            can_buy=left is None or left > 0,
        )

    async def collection(
        self, slug: str, collection_id: uuid.UUID, viewer: Principal | None
    ) -> schemas.CollectionPage:
        business = await self._business(slug)
        collection = await self.repo.collections.collection(business.business_id, collection_id)
        if collection is None:
            raise NotFound("No such collection.", reason="not_found")
        standing = await self.eligibility.standing(business.business_id, viewer)
        if collection.established_only:
            if standing.anonymous:
                raise refused(LOGIN_REQUIRED, "Log in to see this collection.")
            if not standing.is_client:
                raise refused(NOT_A_CLIENT, "This collection is for established clients.")
        ids = [uuid.UUID(str(o)) for o in collection.offering_ids]
        rows = await self.repo.offerings.offerings(
            business.business_id, statuses=[PUBLISHED], ids=ids
        )
        by_id = {o.id: (o, v) for o, v in rows}
        visible = [
            by_id[i]
            for i in ids
            if i in by_id
            and refusal(by_id[i][0].status, by_id[i][1].visibility, by_id[i][1].group_ids, standing)
            is None
        ]
        return schemas.CollectionPage(
            business=business_out(business),
            collection=schemas.CollectionSummary(
                id=collection.id,
                name=collection.name,
                description=collection.description,
                in_app=collection.in_app,
                established_only=collection.established_only,
            ),
            offerings=[card(o, v, self.locale) for o, v in visible],
        )

    async def menu(self, viewer: Principal) -> schemas.Menu:
        """The in-app collections of every business the viewer is an active client of."""
        business_ids = await self.repo.read_model.businesses_of_client(viewer.account_id)
        businesses = await self.repo.read_model.businesses(business_ids)
        collections = await self.repo.collections.in_app_collections(list(businesses))
        entries: dict[uuid.UUID, list[schemas.MenuCollection]] = {}
        for c in collections:
            slug = businesses[c.business_id].slug
            entries.setdefault(c.business_id, []).append(
                schemas.MenuCollection(id=c.id, name=c.name, path=collection_path(slug, c.id))
            )
        ordered = sorted(entries, key=lambda b: (businesses[b].name.casefold(), str(b)))
        return schemas.Menu(
            businesses=[
                schemas.MenuBusiness(business=business_out(businesses[b]), collections=entries[b])
                for b in ordered
            ]
        )
