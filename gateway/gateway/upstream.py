"""One shared aiohttp client for every call to a service (proxying and pages)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp

from gateway.config import GatewaySettings
from kit.logging import current_ids


class UpstreamUnavailable(RuntimeError):
    pass


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any
    headers: dict[str, str]

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def field_errors(self) -> dict[str, str]:
        """problem+json ``errors`` as {field: message}, for re-rendering a form."""
        if not isinstance(self.body, dict):
            return {}
        return {
            str(e.get("field", "")).split(".")[-1]: str(e.get("message", "is invalid"))
            for e in self.body.get("errors", [])
            if isinstance(e, dict)
        }

    @property
    def detail(self) -> str:
        if isinstance(self.body, dict):
            return str(self.body.get("detail") or self.body.get("title") or "")
        return ""


class Upstreams:
    def __init__(self, settings: GatewaySettings) -> None:
        self.bases = settings.upstreams()
        self.timeout = aiohttp.ClientTimeout(total=settings.upstream_timeout_seconds)
        self.pool_size = settings.upstream_pool_size
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self.pool_size, limit_per_host=self.pool_size, ttl_dns_cache=300
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self.timeout,
            auto_decompress=False,  # pass bodies through as the service sent them
            cookie_jar=aiohttp.DummyCookieJar(),  # never keep cookies between users
            skip_auto_headers=("User-Agent",),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("Upstreams.start() was not awaited")
        return self._session

    async def call(
        self,
        service: str,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        token: str | None = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """A JSON call to a service on behalf of a page."""
        headers = {**(headers or {}), "Accept": "application/json"}
        request_id = current_ids().get("request_id")
        if request_id:
            headers["X-Request-ID"] = request_id
        if token:
            headers["Authorization"] = f"Bearer {token}"
        url = f"{self.bases[service]}{path}"
        try:
            async with self.session.request(
                method, url, json=json_body, headers=headers, params=params
            ) as response:
                raw = await response.read()
                body = json.loads(raw) if raw else None
                return Reply(response.status, body, dict(response.headers))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamUnavailable(f"{service} is unavailable: {exc}") from exc
