"""HTTP API of the sequences domain (under /api/v1/notifications). A business's staff only."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from kit.auth import CurrentCoach
from kit.db import db_session
from kit.validation import MAX_OFFSET
from notifications.sequences import schemas
from notifications.sequences.service import SequenceService

router = APIRouter(prefix="/businesses/{business_id}/sequences", tags=["sequences"])

Session = Annotated[AsyncSession, Depends(db_session, scope="function")]


def _service(session: Session) -> SequenceService:
    return SequenceService(session)


Service = Annotated[SequenceService, Depends(_service)]


@router.get("", response_model=schemas.SequenceList)
async def list_sequences(coach: CurrentCoach, service: Service) -> schemas.SequenceList:
    """The business's sequences, newest first, with their steps and run counts."""
    return await service.listing(coach.business_id)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=schemas.SequenceOut)
async def create_sequence(
    coach: CurrentCoach, service: Service, body: schemas.SequenceIn
) -> schemas.SequenceOut:
    """A new sequence; linked to ``offering_id`` (one sequence per offering at most)."""
    return await service.create(coach.business_id, body)


@router.get("/{sequence_id}", response_model=schemas.SequenceOut)
async def get_sequence(
    coach: CurrentCoach, service: Service, sequence_id: uuid.UUID
) -> schemas.SequenceOut:
    return await service.get(coach.business_id, sequence_id)


@router.put("/{sequence_id}", response_model=schemas.SequenceOut)
async def replace_sequence(
    coach: CurrentCoach, service: Service, sequence_id: uuid.UUID, body: schemas.SequenceIn
) -> schemas.SequenceOut:
    """Replace the sequence and its steps; runs already started keep their steps."""
    return await service.update(coach.business_id, sequence_id, body)


@router.delete("/{sequence_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_sequence(
    coach: CurrentCoach, service: Service, sequence_id: uuid.UUID
) -> Response:
    """Delete (and unlink) the sequence; its active runs stop."""
    await service.delete(coach.business_id, sequence_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{sequence_id}/runs", response_model=schemas.RunPage)
async def list_runs(
    coach: CurrentCoach,
    service: Service,
    sequence_id: uuid.UUID,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> schemas.RunPage:
    """Each client's run (newest first) with each step's status and due time."""
    return await service.runs(coach.business_id, sequence_id, limit, offset)
