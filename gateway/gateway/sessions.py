"""Browser sessions: the cookie holds an opaque session token, services want a JWT.

The clients service exchanges a live session token for a short-lived access
token; this cache keeps it until shortly before it expires, so a page view
costs no extra call. Logging out here forgets the entry at once; another
gateway replica keeps its copy at most until the access token expires.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from gateway.upstream import Upstreams
from kit.auth import Principal, TokenVerifier
from kit.errors import Unauthorized
from kit.logging import get_logger
from kit.tokens import hash_token

log = get_logger(__name__)
REFRESH_MARGIN_SECONDS = 60
MAX_CACHED = 50_000


@dataclass(frozen=True)
class ActiveSession:
    access_token: str
    principal: Principal


class SessionResolver:
    def __init__(self, upstreams: Upstreams, verifier: TokenVerifier) -> None:
        self.upstreams = upstreams
        self.verifier = verifier
        self._cache: dict[str, ActiveSession] = {}
        self._in_flight: dict[str, asyncio.Future[ActiveSession | None]] = {}

    async def resolve(self, session_token: str | None) -> ActiveSession | None:
        if not session_token or len(session_token) > 200:
            return None
        key = hash_token(session_token)
        cached = self._cache.get(key)
        if cached and cached.principal.expires_at - REFRESH_MARGIN_SECONDS > time.time():
            return cached
        pending = self._in_flight.get(key)
        if pending is not None:  # one exchange per session, however many requests wait
            return await asyncio.shield(pending)
        future: asyncio.Future[ActiveSession | None] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        try:
            active = await self._exchange(session_token)
            if active is None:
                self._cache.pop(key, None)
            else:
                if len(self._cache) >= MAX_CACHED:
                    self._cache.clear()
                self._cache[key] = active
            future.set_result(active)
            return active
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        finally:
            self._in_flight.pop(key, None)

    async def _exchange(self, session_token: str) -> ActiveSession | None:
        reply = await self.upstreams.call(
            "clients",
            "POST",
            "/api/v1/clients/sessions/token",
            json_body={"session_token": session_token},
        )
        if reply.status in (401, 422):
            return None
        if not reply.ok:
            log.warning("session_exchange_failed", status=reply.status)
            return None
        token = reply.body.get("access_token") if isinstance(reply.body, dict) else None
        if not isinstance(token, str) or not token:
            log.error("session_exchange_malformed_reply")
            return None
        try:
            principal = await self.verifier.verify(token)
        except Unauthorized:
            log.error("session_exchange_returned_invalid_token")
            return None
        return ActiveSession(token, principal)

    def remember(self, session_token: str, access_token: str, principal: Principal) -> None:
        """Seed the cache right after a login, which already returned an access token."""
        self._cache[hash_token(session_token)] = ActiveSession(access_token, principal)

    def forget(self, session_token: str | None) -> None:
        if session_token:
            self._cache.pop(hash_token(session_token), None)
