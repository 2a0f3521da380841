"""HTTP API of purchases (under /api/v1/clients): the buyer's purchases, claiming an account."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, status

from clients.identity import schemas as identity_schemas
from clients.identity.endpoints import Identity
from clients.purchases import schemas
from clients.purchases.service import PurchaseService
from kit.auth import CurrentAccount

router = APIRouter(tags=["purchases"])


async def purchase_service(identity: Identity) -> PurchaseService:
    return PurchaseService(identity.session, identity)


Purchases = Annotated[PurchaseService, Depends(purchase_service)]


@router.get("/me/purchases", response_model=schemas.MyPurchases)
async def my_purchases(account: CurrentAccount, purchases: Purchases) -> schemas.MyPurchases:
    """The caller's credits ("3 of 5 left") and entitlements, per business."""
    return await purchases.mine(account.account_id)


@router.post(
    "/claims/consume",
    status_code=status.HTTP_201_CREATED,
    response_model=identity_schemas.AuthResult,
)
async def claim_account(
    body: schemas.ClaimConsume, identity: Identity, request: Request
) -> identity_schemas.AuthResult:
    """Set the password of an account a purchase made, verify its email and log in."""
    return await identity.claim_account(
        body.token, body.password, request.headers.get("user-agent")
    )
