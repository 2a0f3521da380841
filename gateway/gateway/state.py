"""What the gateway's proxy and pages share, created at start."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.cache import InvalidationListener, PublicCache
from gateway.config import GatewaySettings
from gateway.security import RateLimits
from gateway.sessions import SessionResolver
from gateway.upstream import Upstreams
from kit.auth import TokenVerifier
from kit.messaging import Topology


@dataclass
class GatewayState:
    settings: GatewaySettings
    upstreams: Upstreams
    verifier: TokenVerifier
    sessions: SessionResolver
    rate_limits: RateLimits
    # Anonymous public reads; pages use it too (see gateway.cache for the API).
    public_cache: PublicCache
    cache_listener: InvalidationListener | None

    @classmethod
    def create(cls, settings: GatewaySettings) -> GatewayState:
        upstreams = Upstreams(settings)
        verifier = TokenVerifier(
            issuer=settings.jwt_issuer, audience=settings.jwt_audience, jwks_url=settings.jwks_url
        )
        public_cache = PublicCache(
            ttl_seconds=settings.public_cache_seconds,
            max_entries=settings.public_cache_max_entries,
        )
        listener = (
            InvalidationListener(
                public_cache,
                amqp_url=settings.amqp_url,
                topology=Topology(settings.broker_namespace),
            )
            if public_cache.enabled
            else None
        )
        return cls(
            settings=settings,
            upstreams=upstreams,
            verifier=verifier,
            sessions=SessionResolver(upstreams, verifier),
            rate_limits=RateLimits(settings),
            public_cache=public_cache,
            cache_listener=listener,
        )

    async def start(self) -> None:
        await self.upstreams.start()
        if self.cache_listener is not None:
            # In the background: a broker that is down only means the cache is bypassed.
            await self.cache_listener.start()

    async def close(self) -> None:
        if self.cache_listener is not None:
            await self.cache_listener.close()
        await self.upstreams.close()
        await self.verifier.close()
