"""The catalog's quote endpoint, over HTTP: one offering for one viewer.

Payments takes its prices only from here; the clients service reads an
appointment offering's details and eligibility from here. The viewer's bearer
token (or none) is passed on, so the catalog decides who may see and buy what;
its refusals come back to the caller unchanged (status, type, ``reason`` and
field errors).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp

from kit.errors import FieldError, ServiceError, Unavailable
from kit.logging import current_ids, get_logger

log = get_logger(__name__)

QUOTES_PATH = "/api/v1/catalog/quotes"


class CatalogRefusal(ServiceError):
    """A refusal from the catalog, passed on as it came."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        slug = str(problem.get("type") or "/problems/refused").rsplit("/", 1)[-1] or "refused"
        errors = [
            FieldError(
                str(e.get("field", "")), str(e.get("message", "")), str(e.get("location", "body"))
            )
            for e in problem.get("errors") or []
            if isinstance(e, dict)
        ]
        extra = {"reason": problem["reason"]} if "reason" in problem else {}
        super().__init__(str(problem.get("detail") or "Refused."), errors=errors, **extra)
        self.status = status
        self.slug = slug
        self.title = str(problem.get("title") or "Refused")
        if status == 401:
            self.headers = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True)
class Quote:
    offering_id: uuid.UUID
    business_id: uuid.UUID
    business_name: str | None
    version_id: uuid.UUID
    name: str
    kind: str
    details: dict[str, Any]
    billing: dict[str, Any]
    currency: str
    price_minor: int
    discount_code: str | None
    discount_minor: int
    total_minor: int

    @property
    def free(self) -> bool:
        return self.billing.get("type") == "free" or self.price_minor <= 0


class CatalogClient:
    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._http: aiohttp.ClientSession | None = None

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def quote(
        self, offering_id: uuid.UUID, bearer: str | None, discount_code: str | None = None
    ) -> Quote:
        body: dict[str, Any] = {"offering_id": str(offering_id)}
        if discount_code:
            body["discount_code"] = discount_code
        headers = {"Accept": "application/json"}
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        request_id = current_ids().get("request_id")
        if request_id:
            headers["X-Request-ID"] = request_id
        try:
            async with self.http.post(
                f"{self.base_url}{QUOTES_PATH}", json=body, headers=headers
            ) as response:
                status = response.status
                data = await response.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            log.warning("catalog_unreachable", error=type(exc).__name__)
            raise Unavailable("The catalog is unavailable; try again.") from exc
        if status == 200 and isinstance(data, dict):
            return _quote(data)
        if 400 <= status < 500 and isinstance(data, dict):
            raise CatalogRefusal(status, data)
        log.warning("catalog_failed", status=status)
        raise Unavailable("The catalog is unavailable; try again.")


def _quote(data: dict[str, Any]) -> Quote:
    discount = data.get("discount") or None
    return Quote(
        offering_id=uuid.UUID(str(data["offering_id"])),
        business_id=uuid.UUID(str(data["business_id"])),
        business_name=data.get("business_name"),
        version_id=uuid.UUID(str(data["version_id"])),
        name=str(data["name"]),
        kind=str(data["kind"]),
        details=dict(data.get("details") or {}),
        billing=dict(data.get("billing") or {}),
        currency=str(data["currency"]),
        price_minor=int(data["price_minor"]),
        discount_code=None if discount is None else str(discount["code"]),
        discount_minor=0 if discount is None else int(discount["amount_off_minor"]),
        total_minor=int(data["total_minor"]),
    )
