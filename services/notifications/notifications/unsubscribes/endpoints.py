"""Unsubscribe API (under /api/v1/notifications): public, the link's token is the credential.

The gateway serves the page at ``/unsubscribe?token=...`` (and takes RFC 8058
one-click POSTs there) and calls these.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from kit.db import db_session
from notifications.unsubscribes import schemas
from notifications.unsubscribes.service import UnsubscribeService

router = APIRouter(tags=["unsubscribes"])

Session = Annotated[AsyncSession, Depends(db_session, scope="function")]


def _service(request: Request, session: Session) -> UnsubscribeService:
    return UnsubscribeService(session, request.app.state.unsubscribe_tokens)


Service = Annotated[UnsubscribeService, Depends(_service)]


@router.post("/unsubscribe/lookup", response_model=schemas.UnsubscribeStatus)
async def lookup(body: schemas.TokenRequest, service: Service) -> schemas.UnsubscribeStatus:
    """Which business and address the link is for, and whether it is unsubscribed."""
    return await service.lookup(body.token)


@router.post("/unsubscribe", response_model=schemas.UnsubscribeStatus)
async def unsubscribe(body: schemas.TokenRequest, service: Service) -> schemas.UnsubscribeStatus:
    """No more promotional email from this business to this address (idempotent)."""
    return await service.unsubscribe(body.token)


@router.post("/unsubscribe/undo", response_model=schemas.UnsubscribeStatus)
async def undo(body: schemas.TokenRequest, service: Service) -> schemas.UnsubscribeStatus:
    """Subscribe again (idempotent)."""
    return await service.resubscribe(body.token)
