"""Looking up, making and undoing an unsubscribe, by the token of an emailed link.

The token is the only credential: a bad or altered one is "not found",
like a token for an address that was never written to.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from kit.db import utcnow
from kit.errors import NotFound
from kit.logging import get_logger
from notifications.unsubscribes.repository import UnsubscribeRepository
from notifications.unsubscribes.schemas import UnsubscribeStatus
from notifications.unsubscribes.tokens import UnsubscribeTarget, UnsubscribeTokens

log = get_logger(__name__)


class UnsubscribeService:
    def __init__(self, session: AsyncSession, tokens: UnsubscribeTokens) -> None:
        self.repo = UnsubscribeRepository(session)
        self.tokens = tokens

    def _target(self, token: str) -> UnsubscribeTarget:
        target = self.tokens.read(token)
        if target is None:
            raise NotFound("This unsubscribe link is not valid.")
        return target

    async def _status(self, target: UnsubscribeTarget, unsubscribed: bool) -> UnsubscribeStatus:
        return UnsubscribeStatus(
            business_name=await self.repo.business_name(target.business_id),
            email=target.email,
            unsubscribed=unsubscribed,
        )

    async def lookup(self, token: str) -> UnsubscribeStatus:
        target = self._target(token)
        unsubscribed = await self.repo.is_unsubscribed(target.business_id, target.email)
        return await self._status(target, unsubscribed)

    async def unsubscribe(self, token: str) -> UnsubscribeStatus:
        target = self._target(token)
        await self.repo.add(target.business_id, target.email, utcnow())
        log.info("unsubscribed", business_id=str(target.business_id))
        return await self._status(target, True)

    async def resubscribe(self, token: str) -> UnsubscribeStatus:
        target = self._target(token)
        await self.repo.remove(target.business_id, target.email)
        log.info("resubscribed", business_id=str(target.business_id))
        return await self._status(target, False)
