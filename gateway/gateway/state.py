"""What the gateway's proxy and pages share, created at start."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config import GatewaySettings
from gateway.security import RateLimits
from gateway.sessions import SessionResolver
from gateway.upstream import Upstreams
from kit.auth import TokenVerifier


@dataclass
class GatewayState:
    settings: GatewaySettings
    upstreams: Upstreams
    verifier: TokenVerifier
    sessions: SessionResolver
    rate_limits: RateLimits

    @classmethod
    def create(cls, settings: GatewaySettings) -> GatewayState:
        upstreams = Upstreams(settings)
        verifier = TokenVerifier(
            issuer=settings.jwt_issuer, audience=settings.jwt_audience, jwks_url=settings.jwks_url
        )
        return cls(
            settings=settings,
            upstreams=upstreams,
            verifier=verifier,
            sessions=SessionResolver(upstreams, verifier),
            rate_limits=RateLimits(settings),
        )

    async def start(self) -> None:
        await self.upstreams.start()

    async def close(self) -> None:
        await self.upstreams.close()
        await self.verifier.close()
