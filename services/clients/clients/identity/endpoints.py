"""HTTP API of the identity domain (under /api/v1/clients)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from clients.identity import schemas
from clients.identity.service import IdentityService
from kit.auth import CurrentAccount
from kit.db import db_session

router = APIRouter(tags=["identity"])


async def identity_service(
    request: Request, session: Annotated[AsyncSession, Depends(db_session, scope="function")]
) -> IdentityService:
    state = request.app.state
    return IdentityService(session, state.settings, state.signer, state.outbox)


Identity = Annotated[IdentityService, Depends(identity_service)]


def _user_agent(request: Request) -> str | None:
    return request.headers.get("user-agent")


@router.post("/signup", status_code=status.HTTP_201_CREATED, response_model=schemas.AuthResult)
async def signup(
    body: schemas.SignupRequest, identity: Identity, request: Request
) -> schemas.AuthResult:
    """Create a coach account and its business, and log in."""
    return await identity.signup(body, _user_agent(request))


@router.post("/sessions", status_code=status.HTTP_201_CREATED, response_model=schemas.AuthResult)
async def login(
    body: schemas.LoginRequest, identity: Identity, request: Request
) -> schemas.AuthResult:
    return await identity.login(body, _user_agent(request))


@router.post("/sessions/token", response_model=schemas.AccessToken)
async def exchange_session(
    body: schemas.SessionTokenRequest, identity: Identity
) -> schemas.AccessToken:
    """A fresh short-lived access token for a live session."""
    return await identity.exchange_session(body.session_token)


@router.post("/sessions/revoke", status_code=status.HTTP_204_NO_CONTENT)
async def logout(body: schemas.SessionTokenRequest, identity: Identity) -> Response:
    await identity.logout(body.session_token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/magic-links", status_code=status.HTTP_202_ACCEPTED, response_model=schemas.Accepted)
async def request_magic_link(
    body: schemas.MagicLinkRequest, identity: Identity
) -> schemas.Accepted:
    await identity.request_magic_link(body)
    return schemas.Accepted(
        detail="If an account exists for this address, a login link is on its way."
    )


@router.post(
    "/magic-links/consume", status_code=status.HTTP_201_CREATED, response_model=schemas.AuthResult
)
async def consume_magic_link(
    body: schemas.TokenRequest, identity: Identity, request: Request
) -> schemas.AuthResult:
    return await identity.consume_magic_link(body.token, _user_agent(request))


@router.post(
    "/password-resets", status_code=status.HTTP_202_ACCEPTED, response_model=schemas.Accepted
)
async def request_password_reset(
    body: schemas.PasswordResetRequest, identity: Identity
) -> schemas.Accepted:
    await identity.request_password_reset(body)
    return schemas.Accepted(
        detail="If an account exists for this address, a reset link is on its way."
    )


@router.post(
    "/password-resets/consume",
    status_code=status.HTTP_201_CREATED,
    response_model=schemas.AuthResult,
)
async def reset_password(
    body: schemas.PasswordResetConsume, identity: Identity, request: Request
) -> schemas.AuthResult:
    return await identity.reset_password(body, _user_agent(request))


@router.post("/email-verifications/consume", response_model=schemas.AccountOut)
async def verify_email(body: schemas.TokenRequest, identity: Identity) -> schemas.AccountOut:
    return await identity.verify_email(body.token)


@router.post(
    "/email-verifications", status_code=status.HTTP_202_ACCEPTED, response_model=schemas.Accepted
)
async def resend_verification(account: CurrentAccount, identity: Identity) -> schemas.Accepted:
    sent = await identity.resend_verification(account.account_id)
    detail = "A new verification link is on its way." if sent else "Your email is already verified."
    return schemas.Accepted(status="accepted" if sent else "unchanged", detail=detail)


@router.get("/me", response_model=schemas.Me)
async def me(account: CurrentAccount, identity: Identity) -> schemas.Me:
    """The calling account, with the businesses it works in and its role there."""
    return await identity.me(account.account_id)


@router.get("/.well-known/jwks.json")
async def jwks(request: Request, response: Response) -> dict[str, Any]:
    response.headers["Cache-Control"] = "public, max-age=300"
    jwks_document: dict[str, Any] = request.app.state.signer.jwks()
    return jwks_document
