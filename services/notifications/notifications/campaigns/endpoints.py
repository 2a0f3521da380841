"""HTTP API of the campaigns domain (under /api/v1/notifications). A business's staff only."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from kit.auth import CurrentCoach
from kit.db import db_session
from kit.validation import MAX_OFFSET
from notifications.campaigns import schemas
from notifications.campaigns.service import CampaignService

router = APIRouter(prefix="/businesses/{business_id}/campaigns", tags=["campaigns"])

Session = Annotated[AsyncSession, Depends(db_session, scope="function")]


def _service(request: Request, session: Session) -> CampaignService:
    state = request.app.state
    return CampaignService(session, state.settings, state.renderer, state.unsubscribe_tokens)


Service = Annotated[CampaignService, Depends(_service)]


@router.get("", response_model=schemas.CampaignPage)
async def list_campaigns(
    coach: CurrentCoach,
    service: Service,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> schemas.CampaignPage:
    """The business's campaigns, newest first."""
    return await service.page(coach.business_id, limit, offset)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=schemas.CampaignOut)
async def create_campaign(
    coach: CurrentCoach, service: Service, body: schemas.CampaignCreate
) -> schemas.CampaignOut:
    """A new draft."""
    return await service.create(coach, body)


@router.get("/{campaign_id}", response_model=schemas.CampaignOut)
async def get_campaign(
    coach: CurrentCoach, service: Service, campaign_id: uuid.UUID
) -> schemas.CampaignOut:
    return await service.get(coach.business_id, campaign_id)


@router.patch("/{campaign_id}", response_model=schemas.CampaignOut)
async def update_campaign(
    coach: CurrentCoach, service: Service, campaign_id: uuid.UUID, body: schemas.CampaignUpdate
) -> schemas.CampaignOut:
    """Change a draft (409 once sent)."""
    return await service.update(coach.business_id, campaign_id, body)


@router.delete("/{campaign_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_campaign(
    coach: CurrentCoach, service: Service, campaign_id: uuid.UUID
) -> Response:
    """Delete a draft (409 once sent)."""
    await service.delete(coach.business_id, campaign_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{campaign_id}/preview", response_model=schemas.CampaignPreview)
async def preview_campaign(
    coach: CurrentCoach, service: Service, campaign_id: uuid.UUID
) -> schemas.CampaignPreview:
    """The email as a sample client would get it, and how many would get it now."""
    return await service.preview(coach.business_id, campaign_id)


@router.post("/{campaign_id}/send", response_model=schemas.CampaignOut)
async def send_campaign(
    coach: CurrentCoach, service: Service, campaign_id: uuid.UUID
) -> schemas.CampaignOut:
    """Queue the campaign's emails (once: a second send is 409)."""
    return await service.send(coach.business_id, campaign_id)
