"""HTTP API of collections (under /api/v1/catalog/businesses/{business_id}/collections)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from catalog.collections import schemas
from catalog.collections.service import CollectionService
from kit.auth import CurrentCoach
from kit.db import db_session

router = APIRouter(prefix="/businesses/{business_id}/collections", tags=["collections"])


async def collection_service(
    request: Request, session: Annotated[AsyncSession, Depends(db_session, scope="function")]
) -> CollectionService:
    return CollectionService(session, request.app.state.outbox)


Collections = Annotated[CollectionService, Depends(collection_service)]


@router.get("", response_model=schemas.CollectionList)
async def list_collections(coach: CurrentCoach, collections: Collections) -> schemas.CollectionList:
    return await collections.list(coach.business_id)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=schemas.CollectionOut)
async def create_collection(
    body: schemas.CollectionIn, coach: CurrentCoach, collections: Collections
) -> schemas.CollectionOut:
    return await collections.create(coach.business_id, body)


@router.get("/{collection_id}", response_model=schemas.CollectionOut)
async def get_collection(
    collection_id: uuid.UUID, coach: CurrentCoach, collections: Collections
) -> schemas.CollectionOut:
    return await collections.get(coach.business_id, collection_id)


@router.patch("/{collection_id}", response_model=schemas.CollectionOut)
async def edit_collection(
    collection_id: uuid.UUID,
    body: schemas.CollectionPatch,
    coach: CurrentCoach,
    collections: Collections,
) -> schemas.CollectionOut:
    return await collections.edit(coach.business_id, collection_id, body)


@router.delete("/{collection_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_collection(
    collection_id: uuid.UUID, coach: CurrentCoach, collections: Collections
) -> Response:
    """The collection goes; its offerings stay."""
    await collections.delete(coach.business_id, collection_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
