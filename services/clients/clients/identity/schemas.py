from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from kit.validation import Email, Name

# Length is checked by the password policy with a clear message; this only caps abuse.
Password = Annotated[str, StringConstraints(max_length=1024)]
OpaqueToken = Annotated[str, StringConstraints(min_length=16, max_length=200)]


class Input(BaseModel):
    # Unknown fields are refused: nobody may slip in ids, roles or flags.
    model_config = ConfigDict(extra="forbid")


class SignupRequest(Input):
    name: Name
    email: Email
    password: Password
    business_name: Name


class LoginRequest(Input):
    email: Email
    password: Password = Field(min_length=1)


class SessionTokenRequest(Input):
    session_token: OpaqueToken


class MagicLinkRequest(Input):
    email: Email
    next: str | None = Field(default=None, max_length=500)


class TokenRequest(Input):
    token: OpaqueToken


class PasswordResetRequest(Input):
    email: Email


class PasswordResetConsume(Input):
    token: OpaqueToken
    password: Password


class AccountOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    name: str
    email_verified: bool
    created_at: datetime


class BusinessOut(BaseModel):
    id: uuid.UUID
    name: str
    slug: str
    role: str


class AuthResult(BaseModel):
    """A new login session: the session token (long-lived, opaque) and a first access token."""

    account: AccountOut
    business: BusinessOut | None = None
    access_token: str
    token_type: str = "Bearer"
    expires_in: int
    session_token: str
    session_expires_at: datetime
    next: str | None = None


class AccessToken(BaseModel):
    access_token: str
    token_type: str = "Bearer"
    expires_in: int
    account_id: uuid.UUID


class Me(BaseModel):
    account: AccountOut
    businesses: list[BusinessOut]


class Accepted(BaseModel):
    status: str = "accepted"
    detail: str
