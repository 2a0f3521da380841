"""The HTTP side of a service: request ids, access logs, health, app factory."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import structlog
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kit.aio import freeze_startup_heap
from kit.db import RetryReadsOnDisconnect, database_reachable
from kit.errors import install_error_handlers, problem_response
from kit.logging import get_logger
from kit.metrics import (
    HTTP_DURATION,
    HTTP_REQUESTS,
    METRICS_PATH,
    ROUTE_LABEL_SCOPE_KEY,
    UNMATCHED_ROUTE,
    metrics_router,
)
from kit.openapi import truthful_openapi

log = get_logger("http")

REQUEST_ID_HEADER = "x-request-id"
CORRELATION_ID_HEADER = "x-correlation-id"
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")
QUIET_PATHS = frozenset({"/healthz", "/readyz", METRICS_PATH})
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# (route, method, status) -> the counter and histogram children: labels() once per
# combination, not per request. Bounded: routes and methods are fixed sets.
_HTTP_SERIES: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def route_label(scope: Scope) -> str:
    """The route template that answered (``/api/v1/clients/{client_id}``), never the raw
    path; a bare ASGI app may name its own under ``ROUTE_LABEL_SCOPE_KEY``."""
    route = scope.get("route")
    if route is None:
        label: str = scope.get(ROUTE_LABEL_SCOPE_KEY, UNMATCHED_ROUTE)
        return label
    # FastAPI includes routers lazily: scope["route"] is the route as its router declared
    # it (without the include prefix); the full template is on the effective context.
    fastapi_scope = scope.get("fastapi")
    if fastapi_scope:
        context = fastapi_scope.get("effective_route_context")
        full = getattr(context, "path_format", None) if context is not None else None
        if full:
            return str(full)
    return getattr(route, "path_format", None) or UNMATCHED_ROUTE


def observe_request(scope: Scope, status: int, seconds: float) -> None:
    method = scope.get("method", "")
    key = (route_label(scope), method if method in _METHODS else "OTHER", status)
    series = _HTTP_SERIES.get(key)
    if series is None:
        route, method, _ = key
        series = (
            HTTP_REQUESTS.labels(route, method, str(status)),
            HTTP_DURATION.labels(route, method),
        )
        _HTTP_SERIES[key] = series
    series[0].inc()
    series[1].observe(seconds)


def sanitize_id(value: str | None) -> str | None:
    """An id from a header, if it is a harmless token (it ends up in logs and headers)."""
    if value and _SAFE_ID.match(value):
        return value
    return None


class RequestContextMiddleware:
    """Binds request and correlation ids for every log line and echoes the request id;
    counts every request and its latency by route template (``kit.metrics``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = correlation_id = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                request_id = sanitize_id(value.decode("latin-1"))
            elif name == b"x-correlation-id":
                correlation_id = sanitize_id(value.decode("latin-1"))
        request_id = request_id or uuid.uuid4().hex
        correlation_id = correlation_id or request_id
        tokens = structlog.contextvars.bind_contextvars(
            request_id=request_id, correlation_id=correlation_id
        )
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            observe_request(scope, status, elapsed)
            path = scope.get("path", "")
            if path not in QUIET_PATHS:
                log.info(
                    "http_request",
                    method=scope.get("method"),
                    path=path,
                    status=status,
                    duration_ms=round(elapsed * 1000, 2),
                )
            structlog.contextvars.reset_contextvars(**tokens)


def health_router() -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> JSONResponse:
        state = request.app.state
        checks: dict[str, bool] = {}
        if getattr(state, "engine", None) is not None:
            checks["database"] = await database_reachable(state.engine)
        if getattr(state, "broker", None) is not None:
            checks["broker"] = await state.broker.ping()
        for name, check in getattr(state, "readiness_checks", {}).items():
            checks[name] = await check()
        if all(checks.values()):
            return JSONResponse({"status": "ready", "checks": checks})
        failing = ", ".join(name for name, ok in checks.items() if not ok)
        return problem_response(
            503, "not-ready", "Not ready", f"unreachable: {failing}", extra={"checks": checks}
        )

    return router


def create_app(
    *,
    title: str,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
    **kwargs: Any,
) -> FastAPI:
    startup = lifespan or no_lifespan

    @asynccontextmanager
    async def lifespan_then_freeze(app: FastAPI) -> AsyncIterator[None]:
        async with startup(app):
            freeze_startup_heap()
            yield

    app = FastAPI(title=title, lifespan=lifespan_then_freeze, **kwargs)
    install_error_handlers(app)
    truthful_openapi(app)
    app.include_router(health_router())
    app.include_router(metrics_router())
    app.add_middleware(RetryReadsOnDisconnect)  # inside: one access log line per request
    app.add_middleware(RequestContextMiddleware)
    return app


@asynccontextmanager
async def no_lifespan(_app: FastAPI) -> AsyncIterator[None]:
    yield
