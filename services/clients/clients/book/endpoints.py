"""HTTP API of the client book (under /api/v1/clients)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession

from clients.book import schemas
from clients.book.service import ClientBook
from kit.auth import CurrentAccount, CurrentCoach
from kit.db import db_session
from kit.validation import MAX_OFFSET

router = APIRouter(tags=["clients"])


async def client_book(
    request: Request, session: Annotated[AsyncSession, Depends(db_session, scope="function")]
) -> ClientBook:
    return ClientBook(session, request.app.state.outbox)


Book = Annotated[ClientBook, Depends(client_book)]


@router.get("/businesses/{business_id}/clients", response_model=schemas.ClientPage)
async def list_clients(
    coach: CurrentCoach,
    book: Book,
    q: Annotated[str | None, Query(max_length=200, description="Name or email contains")] = None,
    status: Annotated[str, Query(pattern="^(active|archived|all)$")] = "active",
    group_id: uuid.UUID | None = None,
    sort: schemas.Sort = "-created_at",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> schemas.ClientPage:
    return await book.list(
        coach.business_id,
        text=q.strip() if q and q.strip() else None,
        status=None if status == "all" else status,
        group_id=group_id,
        sort=sort,
        limit=limit,
        offset=offset,
    )


@router.get("/businesses/{business_id}/clients/{client_id}", response_model=schemas.ClientProfile)
async def client_profile(
    client_id: uuid.UUID, coach: CurrentCoach, book: Book
) -> schemas.ClientProfile:
    return await book.profile(coach.business_id, client_id)


@router.post(
    "/businesses/{business_id}/clients/{client_id}/archive", response_model=schemas.ClientOut
)
async def archive_client(
    client_id: uuid.UUID, coach: CurrentCoach, book: Book
) -> schemas.ClientOut:
    """Hide the client from lists and promotions; keeps their history and purchases."""
    return await book.archive(coach.business_id, client_id, coach.principal.name)


@router.post(
    "/businesses/{business_id}/clients/{client_id}/restore", response_model=schemas.ClientOut
)
async def restore_client(
    client_id: uuid.UUID, coach: CurrentCoach, book: Book
) -> schemas.ClientOut:
    return await book.restore(coach.business_id, client_id, coach.principal.name)


@router.get("/me/memberships", response_model=schemas.Memberships)
async def my_memberships(account: CurrentAccount, book: Book) -> schemas.Memberships:
    """The businesses the caller is an active client of (their client home)."""
    return await book.memberships(account.account_id)
