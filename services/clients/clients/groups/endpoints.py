"""HTTP API of client groups (under /api/v1/clients/businesses/{business_id}/groups)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from clients.groups import schemas
from clients.groups.service import GroupService
from kit.auth import CurrentCoach
from kit.db import db_session

router = APIRouter(prefix="/businesses/{business_id}/groups", tags=["groups"])


async def group_service(
    request: Request, session: Annotated[AsyncSession, Depends(db_session, scope="function")]
) -> GroupService:
    return GroupService(session, request.app.state.outbox)


Groups = Annotated[GroupService, Depends(group_service)]


@router.get("", response_model=schemas.GroupList)
async def list_groups(coach: CurrentCoach, groups: Groups) -> schemas.GroupList:
    return await groups.list(coach.business_id)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=schemas.GroupOut)
async def create_group(
    body: schemas.GroupIn, coach: CurrentCoach, groups: Groups
) -> schemas.GroupOut:
    """A new group; it may stay empty. Names are unique within a business."""
    return await groups.create(coach.business_id, body.name)


@router.get("/{group_id}", response_model=schemas.GroupDetail)
async def group_detail(
    group_id: uuid.UUID, coach: CurrentCoach, groups: Groups
) -> schemas.GroupDetail:
    return await groups.detail(coach.business_id, group_id)


@router.patch("/{group_id}", response_model=schemas.GroupOut)
async def rename_group(
    group_id: uuid.UUID, body: schemas.GroupIn, coach: CurrentCoach, groups: Groups
) -> schemas.GroupOut:
    return await groups.rename(coach.business_id, group_id, body.name)


@router.delete("/{group_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_group(group_id: uuid.UUID, coach: CurrentCoach, groups: Groups) -> Response:
    """Deletes the group; its members stay clients and keep what they booked or bought."""
    await groups.delete(coach.business_id, group_id, coach.principal.name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{group_id}/members", response_model=schemas.MembershipChange)
async def add_members(
    group_id: uuid.UUID, body: schemas.MembersIn, coach: CurrentCoach, groups: Groups
) -> schemas.MembershipChange:
    return await groups.add_members(
        coach.business_id, group_id, body.client_ids, coach.principal.name
    )


@router.post("/{group_id}/members/remove", response_model=schemas.MembershipChange)
async def remove_members(
    group_id: uuid.UUID, body: schemas.MembersIn, coach: CurrentCoach, groups: Groups
) -> schemas.MembershipChange:
    """Ends memberships only: nothing the clients booked or bought is cancelled."""
    return await groups.remove_members(
        coach.business_id, group_id, body.client_ids, coach.principal.name
    )
