"""HTTP API of invitations (under /api/v1/clients)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, status
from sqlalchemy.ext.asyncio import AsyncSession

from clients.identity import schemas as identity_schemas
from clients.identity.endpoints import identity_service
from clients.identity.service import IdentityService
from clients.invitations import schemas
from clients.invitations.service import InvitationService
from kit.auth import CurrentCoach, OptionalViewer
from kit.db import db_session
from kit.validation import MAX_OFFSET

router = APIRouter(tags=["invitations"])


async def invitation_service(
    request: Request,
    session: Annotated[AsyncSession, Depends(db_session, scope="function")],
    identity: Annotated[IdentityService, Depends(identity_service)],
) -> InvitationService:
    state = request.app.state
    return InvitationService(session, state.settings, state.outbox, identity)


Invitations = Annotated[InvitationService, Depends(invitation_service)]
BUSINESS = "/businesses/{business_id}/invitations"


@router.post(BUSINESS, response_model=schemas.InviteResult)
async def invite(
    body: schemas.InviteIn, coach: CurrentCoach, invitations: Invitations
) -> schemas.InviteResult:
    """Invite many addresses at once; every address gets its own outcome."""
    return await invitations.invite(coach.business_id, coach.principal, body.addresses)


@router.get(BUSINESS, response_model=schemas.InvitationPage)
async def list_invitations(
    coach: CurrentCoach,
    invitations: Invitations,
    status: Annotated[str | None, Query(pattern="^(pending|accepted|expired|revoked)$")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> schemas.InvitationPage:
    return await invitations.list(coach.business_id, status, limit, offset)


@router.get(f"{BUSINESS}/quota", response_model=schemas.Quota)
async def quota(coach: CurrentCoach, invitations: Invitations) -> schemas.Quota:
    return await invitations.quota(coach.business_id)


@router.post(f"{BUSINESS}/{{invitation_id}}/revoke", response_model=schemas.InvitationOut)
async def revoke(
    invitation_id: uuid.UUID, coach: CurrentCoach, invitations: Invitations
) -> schemas.InvitationOut:
    return await invitations.revoke(coach.business_id, invitation_id)


@router.post(f"{BUSINESS}/{{invitation_id}}/resend", response_model=schemas.InvitationOut)
async def resend(
    invitation_id: uuid.UUID, coach: CurrentCoach, invitations: Invitations
) -> schemas.InvitationOut:
    """A new link (the old one stops working) with a fresh expiry."""
    return await invitations.resend(coach.business_id, invitation_id, coach.principal)


@router.post("/invitations/lookup", response_model=schemas.InvitationLookup)
async def lookup(body: schemas.TokenIn, invitations: Invitations) -> schemas.InvitationLookup:
    """What an invitation link is for (the page shows it before anyone accepts)."""
    return await invitations.lookup(body.token)


@router.post(
    "/invitations/accept",
    status_code=status.HTTP_201_CREATED,
    response_model=identity_schemas.AuthResult,
)
async def accept(
    body: schemas.AcceptIn, viewer: OptionalViewer, invitations: Invitations, request: Request
) -> identity_schemas.AuthResult:
    """Accept: as the logged-in account, with the existing account's password, or by
    creating the account. Logs in and makes the person a client of the business."""
    return await invitations.accept(body, viewer, request.headers.get("user-agent"))
