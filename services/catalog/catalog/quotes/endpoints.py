"""POST /api/v1/catalog/quotes: the price of an offering for whoever is asking."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from sqlalchemy.ext.asyncio import AsyncSession

from catalog.quotes import schemas
from catalog.quotes.service import QuoteService
from kit.auth import OptionalViewer
from kit.db import db_session

router = APIRouter(tags=["quotes"])


async def quote_service(
    session: Annotated[AsyncSession, Depends(db_session, scope="function")],
) -> QuoteService:
    return QuoteService(session)


@router.post("/quotes", response_model=schemas.QuoteOut)
async def quote(
    body: schemas.QuoteIn,
    viewer: OptionalViewer,
    quotes: Annotated[QuoteService, Depends(quote_service)],
) -> schemas.QuoteOut:
    """Refusals are problems with a ``reason`` (see the service's docstring)."""
    return await quotes.quote(body, viewer)
