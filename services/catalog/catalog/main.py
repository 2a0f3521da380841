"""The catalog api process: ``uvicorn --factory catalog.main:build_app``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from catalog import models
from catalog.collections import endpoints as collections
from catalog.config import CatalogSettings
from catalog.discounts import endpoints as discounts
from catalog.eligibility import endpoints as eligibility
from catalog.offerings import endpoints as offerings
from catalog.quotes import endpoints as quotes
from catalog.storefront import endpoints as storefront
from kit.auth import TokenVerifier
from kit.http import create_app
from kit.logging import configure_logging
from kit.messaging import Outbox
from kit.runtime import ServiceContext

API_PREFIX = "/api/v1/catalog"


def build_app(settings: CatalogSettings | None = None) -> FastAPI:
    settings = settings or CatalogSettings()
    configure_logging("catalog-api", settings.log_level, settings.log_format)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        context = ServiceContext.create(settings, "catalog-api")
        app.state.settings = settings
        app.state.engine = context.engine
        app.state.sessionmaker = context.sessionmaker
        # Events go through the outbox (the worker relays them): the api itself never
        # talks to RabbitMQ, so its readiness does not depend on it.
        app.state.outbox = Outbox(models.outbox)
        app.state.token_verifier = TokenVerifier(
            issuer=settings.jwt_issuer, audience=settings.jwt_audience, jwks_url=settings.jwks_url
        )
        try:
            yield
        finally:
            await app.state.token_verifier.close()
            await context.close()

    app = create_app(title="Clientele catalog service", lifespan=lifespan)
    for router in (
        offerings.router,
        collections.router,
        discounts.router,
        eligibility.router,
        storefront.router,
        quotes.router,
    ):
        app.include_router(router, prefix=API_PREFIX)
    return app
