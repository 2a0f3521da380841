"""The gateway process: ``uvicorn --factory gateway.main:build_app``.

``/api/...`` goes straight to the proxy (the hot path); everything else is
the web UI, a FastAPI app. Request ids and security headers wrap both.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.config import GatewaySettings
from gateway.pages import (
    activity,
    appointments,
    billing,
    catalog_coach,
    checkout,
    coach,
    forms,
    public,
    sequences,
    storefront,
    views,
)
from gateway.pages.rendering import STATIC, Pages
from gateway.proxy import STRIPE_WEBHOOK_PATH, ApiProxy
from gateway.security import SecurityHeadersMiddleware
from gateway.state import GatewayState
from gateway.upstream import UpstreamUnavailable
from kit.aio import freeze_startup_heap
from kit.errors import install_error_handlers
from kit.http import RequestContextMiddleware, health_router
from kit.logging import configure_logging, get_logger
from kit.metrics import ROUTE_LABEL_SCOPE_KEY, metrics_router

log = get_logger(__name__)


def _web_app(state: GatewayState) -> FastAPI:
    pages = Pages(state)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await state.start()
        freeze_startup_heap()
        yield
        await state.close()

    app = FastAPI(title="Clientele", lifespan=lifespan, docs_url=None, redoc_url=None)
    install_error_handlers(app)
    app.state.pages = pages

    async def clients_healthy() -> bool:
        try:
            async with state.upstreams.request(
                "clients", "GET", "/healthz", timeout=aiohttp.ClientTimeout(total=2)
            ) as response:
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    app.state.readiness_checks = {"clients": clients_healthy}
    app.include_router(health_router())
    app.include_router(metrics_router())
    routers = (
        views.router,
        coach.router,
        catalog_coach.router,
        public.router,
        storefront.router,
        checkout.router,
        activity.router,
        billing.router,
        forms.router,
        sequences.router,
        appointments.router,
    )
    for router in routers:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(UpstreamUnavailable)
    async def upstream_down(request: Request, exc: Exception) -> Response:
        log.warning("page_upstream_unavailable", error=str(exc))
        return await pages.render(
            request,
            "error.html",
            status=503,
            title="Temporarily unavailable",
            message="Part of Clientele is not answering right now. Please try again shortly.",
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("page_failed", error=type(exc).__name__)
        return await pages.render(
            request,
            "error.html",
            status=500,
            title="Something went wrong",
            message="We could not show this page. Please try again in a moment.",
        )

    return app


def build_app(settings: GatewaySettings | None = None) -> ASGIApp:
    settings = settings or GatewaySettings()
    configure_logging("gateway", settings.log_level, settings.log_format)
    state = GatewayState.create(settings)
    web = _web_app(state)
    proxy = ApiProxy(state)

    async def dispatch(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/api/"):
            await proxy(scope, receive, send)
        elif scope["type"] == "http" and scope["path"] == STRIPE_WEBHOOK_PATH:
            await proxy.stripe_webhook(scope, receive, send)
        elif not (
            scope["type"] == "http"
            and scope["path"].startswith("/b/")
            and await storefront.answer_from_cache(state, scope, send)
        ):
            await web(scope, receive, send)
        else:  # answered from the public cache: one metrics route label for all of them
            scope[ROUTE_LABEL_SCOPE_KEY] = "/b/ (public cache)"

    app = SecurityHeadersMiddleware(
        dispatch, hsts=settings.secure_cookies, stripe_js_url=settings.stripe_js_url
    )
    return RequestContextMiddleware(app)
