"""HTTP API of offerings (under /api/v1/catalog/businesses/{business_id})."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, status
from sqlalchemy.ext.asyncio import AsyncSession

from catalog.offerings import schemas
from catalog.offerings.service import OfferingService
from kit.auth import CurrentCoach
from kit.db import db_session

router = APIRouter(prefix="/businesses/{business_id}", tags=["offerings"])


async def offering_service(
    request: Request, session: Annotated[AsyncSession, Depends(db_session, scope="function")]
) -> OfferingService:
    return OfferingService(session, request.app.state.outbox)


Offerings = Annotated[OfferingService, Depends(offering_service)]


@router.get("/offerings", response_model=schemas.OfferingList)
async def list_offerings(
    coach: CurrentCoach,
    offerings: Offerings,
    status: Annotated[Literal["draft", "published", "archived"] | None, Query()] = None,
) -> schemas.OfferingList:
    return await offerings.list(coach.business_id, status)


@router.post("/offerings", status_code=status.HTTP_201_CREATED, response_model=schemas.OfferingOut)
async def create_offering(
    body: schemas.OfferingIn, coach: CurrentCoach, offerings: Offerings
) -> schemas.OfferingOut:
    """A new draft (version 1); nobody but the business sees it until it is published."""
    return await offerings.create(coach.business_id, body)


@router.get("/offerings/{offering_id}", response_model=schemas.OfferingOut)
async def get_offering(
    offering_id: uuid.UUID, coach: CurrentCoach, offerings: Offerings
) -> schemas.OfferingOut:
    return await offerings.get(coach.business_id, offering_id)


@router.patch("/offerings/{offering_id}", response_model=schemas.OfferingOut)
async def edit_offering(
    offering_id: uuid.UUID, body: schemas.OfferingPatch, coach: CurrentCoach, offerings: Offerings
) -> schemas.OfferingOut:
    """A draft is edited in place; a published offering gets a new version."""
    return await offerings.edit(coach.business_id, offering_id, body)


@router.post("/offerings/{offering_id}/publish", response_model=schemas.OfferingOut)
async def publish_offering(
    offering_id: uuid.UUID, coach: CurrentCoach, offerings: Offerings
) -> schemas.OfferingOut:
    return await offerings.publish(coach.business_id, offering_id)


@router.post("/offerings/{offering_id}/archive", response_model=schemas.OfferingOut)
async def archive_offering(
    offering_id: uuid.UUID, coach: CurrentCoach, offerings: Offerings
) -> schemas.OfferingOut:
    """Nobody can see or buy it any more; what was sold stays sold."""
    return await offerings.archive(coach.business_id, offering_id)


@router.get("/offerings/{offering_id}/versions", response_model=schemas.VersionList)
async def list_versions(
    offering_id: uuid.UUID, coach: CurrentCoach, offerings: Offerings
) -> schemas.VersionList:
    """Newest first."""
    return await offerings.versions(coach.business_id, offering_id)


@router.get("/offering-versions/{version_id}", response_model=schemas.OfferingVersionOut)
async def get_version(
    version_id: uuid.UUID, coach: CurrentCoach, offerings: Offerings
) -> schemas.OfferingVersionOut:
    return await offerings.version(coach.business_id, version_id)
