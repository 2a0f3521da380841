"""Access-token verification, shared by the gateway and every service.

Tokens are short-lived JWTs issued by the clients service and signed with a
key it publishes as a JWKS. Verification checks the signature against that
JWKS (cached, refreshed when a token names an unknown ``kid``), an explicit
algorithm allowlist (``none`` and HMAC can never pass), and ``aud``, ``iss``
and ``exp``. Services check tokens themselves: a request is never trusted
because it came through the gateway.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import aiohttp
import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from jwt import PyJWK

from kit.errors import NotFound, Unauthorized
from kit.logging import get_logger

log = get_logger(__name__)

ALLOWED_ALGORITHMS = ("EdDSA",)
REQUIRED_CLAIMS = ["exp", "iat", "sub", "iss", "aud"]


@dataclass(frozen=True)
class Principal:
    """Who is calling: an account, and the businesses it is staff of."""

    account_id: uuid.UUID
    email: str
    name: str
    session_id: uuid.UUID | None = None
    staff_of: dict[uuid.UUID, str] = field(default_factory=dict)  # business id -> role
    expires_at: float = 0.0

    def is_staff_of(self, business_id: uuid.UUID) -> bool:
        return business_id in self.staff_of

    @classmethod
    def from_claims(cls, claims: dict[str, Any]) -> Principal:
        try:
            staff = {uuid.UUID(k): str(v) for k, v in dict(claims.get("staff") or {}).items()}
            sid = claims.get("sid")
            return cls(
                account_id=uuid.UUID(str(claims["sub"])),
                email=str(claims.get("email", "")),
                name=str(claims.get("name", "")),
                session_id=uuid.UUID(str(sid)) if sid else None,
                staff_of=staff,
                expires_at=float(claims["exp"]),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise Unauthorized("The access token's claims are malformed.") from exc


class TokenVerifier:
    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        jwks_url: str | None = None,
        jwks: dict[str, Any] | None = None,
        algorithms: Sequence[str] = ALLOWED_ALGORITHMS,
        refresh_interval: float = 10.0,
        cache_size: int = 10_000,
    ) -> None:
        if not set(algorithms) <= set(ALLOWED_ALGORITHMS):
            raise ValueError(f"only {ALLOWED_ALGORITHMS} may be allowed")
        self.issuer = issuer
        self.audience = audience
        self.jwks_url = jwks_url
        self.algorithms = list(algorithms)
        self.refresh_interval = refresh_interval
        self._keys: dict[str, PyJWK] = {}
        self._last_fetch = 0.0
        self._fetch_lock = asyncio.Lock()
        self._http: aiohttp.ClientSession | None = None
        # Verified tokens, so a hot path does not redo the signature check.
        self._verified: dict[str, Principal] = {}
        self._cache_size = cache_size
        if jwks is not None:
            self.set_keys(jwks)

    def set_keys(self, jwks: dict[str, Any]) -> None:
        keys: dict[str, PyJWK] = {}
        for data in jwks.get("keys", []):
            kid = data.get("kid")
            if not kid or data.get("use", "sig") != "sig":
                continue
            try:
                key = PyJWK(data)
            except jwt.PyJWTError as exc:
                log.warning("jwks_key_skipped", kid=kid, error=str(exc))
                continue
            if key.algorithm_name in self.algorithms:
                keys[kid] = key
        self._keys = keys

    async def _refresh(self) -> None:
        if self.jwks_url is None:
            return
        async with self._fetch_lock:
            # Unknown kids must not turn into a flood of JWKS fetches.
            min_interval = self.refresh_interval if self._keys else 1.0
            if time.monotonic() - self._last_fetch < min_interval:
                return
            self._last_fetch = time.monotonic()
            if self._http is None:
                self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
            try:
                async with self._http.get(self.jwks_url) as response:
                    response.raise_for_status()
                    self.set_keys(await response.json())
                log.info("jwks_refreshed", keys=len(self._keys))
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                log.warning("jwks_fetch_failed", url=self.jwks_url, error=str(exc))

    async def _key_for(self, kid: str) -> PyJWK:
        key = self._keys.get(kid)
        if key is None:
            await self._refresh()
            key = self._keys.get(kid)
        if key is None:
            raise Unauthorized("The access token was signed with an unknown key.")
        return key

    async def verify(self, token: str) -> Principal:
        cached = self._verified.get(token)
        if cached is not None and cached.expires_at > time.time():
            return cached
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthorized("The access token is malformed.") from exc
        if header.get("alg") not in self.algorithms:
            raise Unauthorized("The access token uses an algorithm that is not allowed.")
        key = await self._key_for(str(header.get("kid", "")))
        try:
            claims = jwt.decode(
                token,
                key=key.key,
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=self.issuer,
                options={"require": REQUIRED_CLAIMS},
                leeway=5,
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("The access token has expired.") from exc
        except jwt.PyJWTError as exc:
            raise Unauthorized("The access token is not valid.") from exc
        principal = Principal.from_claims(claims)
        if len(self._verified) >= self._cache_size:
            self._verified.clear()
        self._verified[token] = principal
        return principal

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Use 'Authorization: Bearer <token>'.")
    return token.strip()


# Declared only so the OpenAPI document names the bearer token (kit.openapi); the
# token is read and refused by bearer_token, as before.
_DOCUMENTED_OPTIONAL_BEARER = HTTPBearer(scheme_name="optionalBearer", auto_error=False)
_DOCUMENTED_BEARER = HTTPBearer(scheme_name="bearer", auto_error=False)
DocumentedCredentials = HTTPAuthorizationCredentials | None


async def optional_viewer(
    request: Request,
    _documented: Annotated[DocumentedCredentials, Depends(_DOCUMENTED_OPTIONAL_BEARER)],
) -> Principal | None:
    token = bearer_token(request)
    if token is None:
        return None
    verifier: TokenVerifier = request.app.state.token_verifier
    return await verifier.verify(token)


async def current_account(
    viewer: Annotated[Principal | None, Depends(optional_viewer)],
    _documented: Annotated[DocumentedCredentials, Depends(_DOCUMENTED_BEARER)],
) -> Principal:
    if viewer is None:
        raise Unauthorized()
    return viewer


OptionalViewer = Annotated[Principal | None, Depends(optional_viewer)]
CurrentAccount = Annotated[Principal, Depends(current_account)]


@dataclass(frozen=True)
class CoachContext:
    principal: Principal
    business_id: uuid.UUID
    role: str


async def current_coach(business_id: uuid.UUID, account: CurrentAccount) -> CoachContext:
    """The caller is staff of the business in the path; otherwise it does not exist for them."""
    role = account.staff_of.get(business_id)
    if role is None:
        raise NotFound("No such business.")
    return CoachContext(principal=account, business_id=business_id, role=role)


CurrentCoach = Annotated[CoachContext, Depends(current_coach)]
