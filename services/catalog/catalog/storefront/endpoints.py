"""The viewer API (under /api/v1/catalog): public pages' data and the client's menu.

Anyone may call the ``/public`` ones; a bearer token, when sent, is who is
looking (the gateway passes the session's token).
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from catalog.storefront import schemas
from catalog.storefront.service import Storefront
from kit.auth import CurrentAccount, OptionalViewer
from kit.db import db_session

router = APIRouter(tags=["storefront"])


async def storefront(
    request: Request, session: Annotated[AsyncSession, Depends(db_session, scope="function")]
) -> Storefront:
    return Storefront(session, request.app.state.settings.price_locale)


Shop = Annotated[Storefront, Depends(storefront)]


@router.get("/public/businesses/{slug}/packages", response_model=schemas.PackagesPage)
async def packages(slug: str, shop: Shop) -> schemas.PackagesPage:
    """Published, public offerings: the same for every viewer."""
    return await shop.packages(slug)


@router.get(
    "/public/businesses/{slug}/offerings/{offering_id}", response_model=schemas.OfferingPage
)
async def offering(
    slug: str, offering_id: uuid.UUID, viewer: OptionalViewer, shop: Shop
) -> schemas.OfferingPage:
    """404 when this viewer may not see it."""
    return await shop.offering(slug, offering_id, viewer)


@router.get(
    "/public/businesses/{slug}/collections/{collection_id}", response_model=schemas.CollectionPage
)
async def collection(
    slug: str, collection_id: uuid.UUID, viewer: OptionalViewer, shop: Shop
) -> schemas.CollectionPage:
    """The offerings of the collection this viewer may see, in order. An
    established-only collection: 401 ``login_required`` or 403 ``not_a_client``."""
    return await shop.collection(slug, collection_id, viewer)


@router.get("/me/menu", response_model=schemas.Menu)
async def menu(account: CurrentAccount, shop: Shop) -> schemas.Menu:
    return await shop.menu(account)
