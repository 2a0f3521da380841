"""HTTP API of orders (under /api/v1/payments)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, status
from sqlalchemy.ext.asyncio import AsyncSession

from kit.auth import CurrentAccount, CurrentCoach, OptionalViewer, bearer_token
from kit.db import db_session
from kit.validation import MAX_OFFSET
from payments.orders import schemas
from payments.orders.service import OrderService

router = APIRouter(tags=["orders"])


async def order_service(
    request: Request, session: Annotated[AsyncSession, Depends(db_session, scope="function")]
) -> OrderService:
    state = request.app.state
    return OrderService(session, state.outbox, state.settings, state.stripe, state.catalog)


Orders = Annotated[OrderService, Depends(order_service)]
AccessToken = Annotated[str | None, Query(max_length=200)]


@router.post("/orders", status_code=status.HTTP_201_CREATED, response_model=schemas.OrderCreated)
async def create_order(
    request: Request,
    body: schemas.OrderIn,
    idempotency_key: Annotated[str, Header(alias="Idempotency-Key", min_length=8, max_length=200)],
    viewer: OptionalViewer,
    orders: Orders,
) -> schemas.OrderCreated:
    """The price comes from the catalog's quote; a refusal there is passed on unchanged.
    Repeating the request with the same Idempotency-Key answers the same order."""
    return await orders.create(body, idempotency_key, viewer, bearer_token(request))


@router.get("/orders/{order_id}", response_model=schemas.OrderOut)
async def get_order(
    order_id: uuid.UUID, viewer: OptionalViewer, orders: Orders, access_token: AccessToken = None
) -> schemas.OrderOut:
    return await orders.get(order_id, viewer, access_token)


@router.post("/orders/{order_id}/pay", response_model=schemas.OrderOut)
async def pay_order(
    order_id: uuid.UUID,
    body: schemas.PayIn,
    viewer: OptionalViewer,
    orders: Orders,
    access_token: AccessToken = None,
) -> schemas.OrderOut:
    """Charges the card once (one PaymentIntent per order); answers paid, failed (with a
    reason) or requires_action (with the PaymentIntent's client_secret)."""
    return await orders.pay(order_id, body, viewer, access_token)


@router.post("/orders/{order_id}/refresh", response_model=schemas.OrderOut)
async def refresh_order(
    order_id: uuid.UUID, viewer: OptionalViewer, orders: Orders, access_token: AccessToken = None
) -> schemas.OrderOut:
    return await orders.refresh(order_id, viewer, access_token)


@router.get("/businesses/{business_id}/orders", response_model=schemas.OrderList)
async def list_orders(
    coach: CurrentCoach,
    orders: Orders,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> schemas.OrderList:
    """The business's orders, newest first."""
    return await orders.list(coach.business_id, limit, offset)


@router.get("/me/orders", response_model=schemas.MyOrders)
async def my_orders(
    viewer: CurrentAccount,
    orders: Orders,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> schemas.MyOrders:
    """The logged-in buyer's purchases in every business (paid, or paid and refunded),
    newest first; also those made logged out with the account's email."""
    return await orders.mine(viewer, limit, offset)
