"""One shared aiohttp client for every call to a service (proxying and pages).

A service may run several api replicas (``GATEWAY_<SERVICE>_URL`` with base URLs
comma-separated): requests take them in turn (round-robin, per gateway process).
A replica that refuses the connection is skipped for :data:`REFUSED_SECONDS` and
the request goes to the next one; nothing was sent, so that is safe for any
method. A request that reached a replica is never sent again (it may have done
its work): a replica dying mid-request is that request's 502.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp

from gateway.config import GatewaySettings
from kit.logging import current_ids, get_logger

log = get_logger(__name__)

# How long a replica that refused a connection is tried only after the others.
REFUSED_SECONDS = 5.0


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


class ReplicaSet:
    """One service's api base URLs, taken in turn; one that refused goes last for a while."""

    def __init__(self, service: str, urls: tuple[str, ...]) -> None:
        self.service = service
        self.urls = urls
        self._turn = itertools.cycle(range(len(urls)))
        self._refused_until = dict.fromkeys(urls, 0.0)

    def order(self) -> list[str]:
        """Every replica, in the order this request tries them."""
        if len(self.urls) == 1:
            return list(self.urls)
        start = next(self._turn)
        turn = [self.urls[(start + i) % len(self.urls)] for i in range(len(self.urls))]
        now = time.monotonic()
        return sorted(turn, key=lambda url: self._refused_until[url] > now)  # stable

    def refused(self, url: str) -> None:
        self._refused_until[url] = time.monotonic() + REFUSED_SECONDS


class Upstreams:
    def __init__(self, settings: GatewaySettings) -> None:
        self.replicas = {
            name: ReplicaSet(name, urls) for name, urls in settings.upstream_replicas().items()
        }
        # Each service's first replica (what a single-URL setting names).
        self.bases = {name: replicas.urls[0] for name, replicas in self.replicas.items()}
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

    @asynccontextmanager
    async def request(
        self, service: str, method: str, path: str, **kwargs: Any
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """``session.request`` to one of the service's replicas (``path`` after the base).

        A refused connection moves on to the next replica; the last one's failure, and
        any failure once the request was sent, is raised (aiohttp.ClientError,
        TimeoutError)."""
        replicas = self.replicas[service]
        candidates = replicas.order()
        for attempt, base in enumerate(candidates, start=1):
            try:
                response = await self.session.request(method, f"{base}{path}", **kwargs)
            except aiohttp.ClientConnectorError as exc:
                replicas.refused(base)
                if attempt == len(candidates):
                    raise
                log.warning("upstream_replica_refused", service=service, url=base, error=str(exc))
                continue
            async with response:
                yield response
            return

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
        ids = current_ids()
        if request_id := ids.get("request_id"):
            headers["X-Request-ID"] = request_id
        if correlation_id := ids.get("correlation_id"):
            headers["X-Correlation-ID"] = correlation_id
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            async with self.request(
                service, method, path, json=json_body, headers=headers, params=params
            ) as response:
                raw = await response.read()
                body = json.loads(raw) if raw else None
                return Reply(response.status, body, dict(response.headers))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamUnavailable(f"{service} is unavailable: {exc}") from exc
