"""HTTP API of forms (under /api/v1/clients): the buyer signs agreements and fills in
worksheets they bought; the coach reads a client's signatures and answers."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, status
from sqlalchemy.ext.asyncio import AsyncSession

from clients.forms import schemas
from clients.forms.service import FormService
from kit.auth import CurrentAccount, CurrentCoach
from kit.db import db_session

router = APIRouter(tags=["forms"])


async def form_service(
    session: Annotated[AsyncSession, Depends(db_session, scope="function")],
) -> FormService:
    return FormService(session)


Forms = Annotated[FormService, Depends(form_service)]


@router.get("/me/forms", response_model=schemas.MyForms)
async def my_forms(account: CurrentAccount, forms: Forms) -> schemas.MyForms:
    """The caller's agreements and worksheets in every business, signed / answered or not."""
    return await forms.mine(account.account_id)


@router.get("/me/entitlements/{entitlement_id}/agreement", response_model=schemas.AgreementOut)
async def get_agreement(
    entitlement_id: uuid.UUID, account: CurrentAccount, forms: Forms
) -> schemas.AgreementOut:
    """The agreement's text as bought (its version and SHA-256) and the signature, if any."""
    return await forms.agreement(account.account_id, entitlement_id)


@router.post(
    "/me/entitlements/{entitlement_id}/agreement/signature",
    status_code=status.HTTP_201_CREATED,
    response_model=schemas.AgreementOut,
)
async def sign_agreement(
    entitlement_id: uuid.UUID, body: schemas.SignIn, account: CurrentAccount, forms: Forms
) -> schemas.AgreementOut:
    """Sign with the typed full name, once (a second signature is 409). Records the exact
    text bought, its version and SHA-256, the name and the time."""
    return await forms.sign(account.account_id, entitlement_id, body)


@router.get("/me/entitlements/{entitlement_id}/worksheet", response_model=schemas.WorksheetOut)
async def get_worksheet(
    entitlement_id: uuid.UUID, account: CurrentAccount, forms: Forms
) -> schemas.WorksheetOut:
    return await forms.worksheet(account.account_id, entitlement_id)


@router.put(
    "/me/entitlements/{entitlement_id}/worksheet/answers", response_model=schemas.WorksheetOut
)
async def save_answers(
    entitlement_id: uuid.UUID, body: schemas.AnswersIn, account: CurrentAccount, forms: Forms
) -> schemas.WorksheetOut:
    """One answer per question, in order (each at most 5,000 characters); saving again
    replaces the answers."""
    return await forms.save_answers(account.account_id, entitlement_id, body)


@router.get(
    "/businesses/{business_id}/clients/{client_id}/forms", response_model=schemas.ClientForms
)
async def client_forms(
    client_id: uuid.UUID, coach: CurrentCoach, forms: Forms
) -> schemas.ClientForms:
    """A client's agreements (who signed, when, which text) and worksheet answers."""
    return await forms.of_client(coach.business_id, client_id)
