"""HTTP API of discount codes (under /api/v1/catalog/businesses/{business_id}/discount-codes)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from catalog.discounts import schemas
from catalog.discounts.service import DiscountService
from kit.auth import CurrentCoach
from kit.db import db_session

router = APIRouter(prefix="/businesses/{business_id}/discount-codes", tags=["discount codes"])


async def discount_service(
    session: Annotated[AsyncSession, Depends(db_session, scope="function")],
) -> DiscountService:
    return DiscountService(session)


Discounts = Annotated[DiscountService, Depends(discount_service)]


@router.get("", response_model=schemas.DiscountCodeList)
async def list_codes(coach: CurrentCoach, discounts: Discounts) -> schemas.DiscountCodeList:
    return await discounts.list(coach.business_id)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=schemas.DiscountCodeOut)
async def create_code(
    body: schemas.DiscountCodeIn, coach: CurrentCoach, discounts: Discounts
) -> schemas.DiscountCodeOut:
    return await discounts.create(coach.business_id, body)


@router.delete("/{code_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_code(code_id: uuid.UUID, coach: CurrentCoach, discounts: Discounts) -> Response:
    """The code stops working at once; its redemptions stay counted."""
    await discounts.delete(coach.business_id, code_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
