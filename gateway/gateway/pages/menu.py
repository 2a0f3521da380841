"""The user menu's in-app offerings: what ``GET /api/v1/catalog/me/menu`` lists for a viewer.

Every page of a logged-in viewer shows it, so the answer is kept per session
for a few seconds in this process, and a catalog that is down or slow only
empties the menu (and logs); it never breaks a page.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from gateway.sessions import ActiveSession
from gateway.upstream import Upstreams, UpstreamUnavailable
from kit.logging import get_logger

log = get_logger(__name__)
MENU_PATH = "/api/v1/catalog/me/menu"
TTL_SECONDS = 5.0
TIMEOUT_SECONDS = 2.0
MAX_CACHED = 20_000


@dataclass(frozen=True)
class MenuLink:
    name: str
    path: str


@dataclass(frozen=True)
class MenuGroup:
    business_name: str
    links: list[MenuLink] = field(default_factory=list)


@dataclass(frozen=True)
class Menu:
    """In-app collections, grouped by business (only businesses with at least one)."""

    groups: list[MenuGroup] = field(default_factory=list)

    @property
    def links(self) -> list[MenuLink]:
        return [link for group in self.groups for link in group.links]

    @classmethod
    def parse(cls, body: Any) -> Menu:
        groups = []
        for entry in (body or {}).get("businesses", []) if isinstance(body, dict) else []:
            business = entry.get("business") or {}
            links = [
                MenuLink(str(c["name"]), str(c["path"]))
                for c in entry.get("collections") or []
                # Only links on this site: the path comes from a service, still checked.
                if isinstance(c, dict)
                and str(c.get("path", "")).startswith("/b/")
                and "//" not in str(c.get("path"))
            ]
            if links:
                groups.append(MenuGroup(str(business.get("name") or ""), links))
        return cls(groups)


EMPTY = Menu()


class MenuCache:
    def __init__(self, upstreams: Upstreams) -> None:
        self.upstreams = upstreams
        self._cache: dict[str, tuple[float, Menu]] = {}

    def _key(self, active: ActiveSession) -> str:
        principal = active.principal
        return str(principal.session_id or f"{principal.account_id}:{active.access_token[-16:]}")

    async def menu_for(self, active: ActiveSession | None) -> Menu:
        if active is None:
            return EMPTY
        key = self._key(active)
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        menu = await self._fetch(active)
        if len(self._cache) >= MAX_CACHED:
            self._cache.clear()
        self._cache[key] = (now + TTL_SECONDS, menu)
        return menu

    def forget(self, active: ActiveSession | None) -> None:
        if active is not None:
            self._cache.pop(self._key(active), None)

    async def _fetch(self, active: ActiveSession) -> Menu:
        try:
            reply = await asyncio.wait_for(
                self.upstreams.call("catalog", "GET", MENU_PATH, token=active.access_token),
                TIMEOUT_SECONDS,
            )
        except (UpstreamUnavailable, TimeoutError) as exc:
            log.warning("menu_unavailable", error=str(exc) or type(exc).__name__)
            return EMPTY
        if not reply.ok:
            log.warning("menu_unavailable", status=reply.status)
            return EMPTY
        try:
            return Menu.parse(reply.body)
        except (KeyError, TypeError, AttributeError):
            log.error("menu_malformed_reply")
            return EMPTY
